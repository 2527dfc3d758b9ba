"""The SOAP endpoint for creditor ERP systems (spyne, served over HTTPS by cheroot)."""
