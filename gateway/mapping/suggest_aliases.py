"""Header aliases for ``mapping suggest``: normalised names (see ``suggest.normalize``) per canonical field.

Order matters twice: fields earlier in ``ALIASES`` win a column two fields both match, and within a
field an earlier alias is a better match. German first (the clients' exports), then English.
"""

from __future__ import annotations

ALIASES: list[tuple[str, tuple[str, ...]]] = [
    ("creditor_reference", ("referenz", "aktenzeichen", "az", "vorgangsnr", "vorgangsnummer", "vorgang",
                            "forderungsnr", "forderungsnummer", "forderungsid", "fallnr", "fallnummer",
                            "reference", "ref", "caseid", "casenumber", "claimid", "claimreference", "ihrzeichen",
                            "rechnungsnr", "rechnungsnummer", "renr", "rnr", "reno", "belegnr", "belegnummer",
                            "invoicenumber", "invoiceno", "invoicenr", "invoiceid", "invoice", "rechnung",
                            "bestellnr", "bestellnummer", "auftragsnr", "auftragsnummer", "ordernumber", "orderid",
                            "orderno", "abonr", "abonummer", "vertragsnr", "vertragsnummer", "kontonr", "id", "nr", "nummer",
                            "number")),
    ("invoice_number", ("rechnungsnr", "rechnungsnummer", "renr", "rnr", "reno", "belegnr", "belegnummer",
                        "invoicenumber", "invoiceno", "invoicenr", "invoiceid", "invoice", "rechnung")),
    ("principal_amount", ("hauptforderung", "forderungsbetrag", "forderung", "offenerbetrag", "offenerposten",
                          "offen", "restbetrag", "rechnungsbetrag", "betrag", "bruttobetrag", "brutto",
                          "gesamtbetrag", "saldo", "summe", "principal", "principalamount", "amount", "openamount",
                          "amountdue", "balance", "total")),
    ("currency", ("waehrung", "whg", "currency", "cur", "ccy")),
    ("invoice_date", ("rechnungsdatum", "redatum", "rdatum", "rechdatum", "belegdatum", "rechnungvom",
                      "invoicedate", "datum", "date", "rechnung", "beleg", "invoice")),  # date columns only
    ("due_date", ("faelligkeitsdatum", "faelligkeit", "faelligam", "faellig", "zahlungsziel", "zahlbarbis",
                  "duedate", "due")),
    ("first_dunning_date", ("erstemahnung", "mahnung1", "1mahnung", "mahndatum1", "firstdunning",
                            "firstreminder")),
    ("last_dunning_date", ("letztemahnung", "mahndatum", "mahnung", "lastdunning", "dunningdate",
                           "reminderdate", "lastreminder")),
    ("contract_date", ("vertragsdatum", "vertragsbeginn", "vertragsabschluss", "eintrittsdatum", "mitgliedseit",
                       "contractdate", "contractstart")),
    ("default_date", ("verzugsdatum", "verzugseit", "verzug", "defaultdate")),
    ("fees.dunning", ("mahngebuehren", "mahngebuehr", "mahnkosten", "mahnspesen", "dunningfee", "dunningfees",
                      "reminderfee")),
    ("fees.return_debit", ("ruecklastschriftgebuehr", "ruecklastgebuehr", "ruecklastschrift", "ruecklast",
                           "rlsgebuehr", "rls", "bankgebuehr", "returndebitfee", "chargebackfee", "chargeback")),
    ("fees.other", ("nebenkosten", "sonstigekosten", "gebuehren", "kosten", "otherfees", "fees")),
    ("payments.amount", ("gezahlt", "bezahlt", "teilzahlung", "zahlung", "zahlbetrag", "paid", "payment",
                         "amountpaid")),
    ("payments.date", ("zahlungsdatum", "zahldatum", "bezahltam", "paymentdate", "paidon")),
    ("claim_type", ("forderungsart", "forderungstyp", "claimtype", "art")),
    ("reason", ("forderungsgrund", "grund", "leistung", "verwendungszweck", "beschreibung", "betreff",
                "artikel", "produkt", "tarif", "description", "reason", "subject", "product")),
    ("memo", ("bemerkung", "bemerkungen", "notiz", "kommentar", "hinweis", "info", "memo", "note", "notes",
              "comment", "remarks")),
    ("debtor.customer_number", ("kundennr", "kundennummer", "kdnr", "kdnummer", "knr", "kundenid", "kunde",
                                "debitorennr", "debitorennummer", "debitor", "mitgliedsnr", "mitgliedsnummer", "mitglnr", "mitgliedernr",
                                "mitgliednr", "mandant", "personennr", "customernumber", "customerno",
                                "customerid", "customer", "accountno", "memberid", "memberno", "patientid", "patientnr",
                                "patientennr", "patientennummer", "patient", "vertragskonto", "kontonr")),
    ("debtor.salutation", ("anrede", "salutation", "geschlecht", "gender")),
    ("debtor.title", ("titel", "akadtitel", "akademischertitel", "title")),
    ("debtor.first_name", ("vorname", "vname", "firstname", "givenname", "forename")),
    ("debtor.last_name", ("nachname", "familienname", "zuname", "nname", "name", "lastname", "surname",
                          "familyname", "name1")),
    ("debtor.company", ("firma", "firmenname", "firmierung", "unternehmen", "company", "companyname",
                        "organisation", "organization", "name2")),
    ("debtor.legal_form", ("rechtsform", "legalform")),
    ("debtor.contact_person", ("ansprechpartner", "kontaktperson", "contactperson", "contact")),
    ("debtor.representative", ("gesetzlichervertreter", "vertreter", "erziehungsberechtigter", "representative",
                               "guardian")),
    ("debtor.birth_date", ("geburtsdatum", "gebdatum", "gebdat", "geboren", "geburtstag", "gebam", "birthdate",
                           "dateofbirth", "dob", "birthday")),
    ("debtor.street", ("strasse", "str", "strassehausnr", "strassehausnummer", "strasseundhausnummer", "strassenr",
                       "anschrift", "adresse", "street", "streetaddress", "address", "address1", "adresszeile1")),
    ("debtor.house_number", ("hausnr", "hausnummer", "hnr", "nr", "housenumber", "houseno", "streetnumber",
                             "number")),
    ("debtor.postal_code", ("plz", "postleitzahl", "zip", "zipcode", "postcode", "postalcode")),
    ("debtor.city", ("ort", "wohnort", "stadt", "plzort", "plzundort", "city", "town", "place")),
    ("debtor.country", ("land", "staat", "laenderkennzeichen", "lkz", "nation", "country", "countrycode")),
    ("debtor.address_extra", ("adresszusatz", "zusatz", "co", "addressextra", "address2", "adresszeile2")),
    ("debtor.email", ("email", "emailadresse", "mail", "emailaddress")),
    ("debtor.phone", ("telefon", "telefonnr", "telefonnummer", "tel", "mobil", "mobilnr", "handy", "phone",
                      "telephone", "mobile", "phonenumber")),
    ("debtor.iban", ("iban", "bankverbindung", "kontoiban")),
    ("debtor.bic", ("bic", "swift", "swiftbic", "swiftcode")),
    ("debtor.account_holder", ("kontoinhaber", "inhaber", "accountholder")),
]

# A header that names first and last name in one column ("Name, Vorname"), split on the comma.
COMPOSITE_NAME = frozenset({"namevorname", "nachnamevorname", "nameundvorname", "schuldner", "debtor",
                            "fullname", "vollstaendigername", "kundenname", "kunde", "customername"})

# Date notations suggest recognises, in the order it prefers them.
DATE_FORMATS = ("%d.%m.%Y", "%d.%m.%y", "%Y-%m-%d", "%d/%m/%Y", "%Y%m%d", "%d-%m-%Y", "%Y-%m-%d %H:%M:%S",
                "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
