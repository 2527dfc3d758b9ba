"""Every text the web console shows a person, German first, English second (``?lang=en`` or the cookie).

Templates and routes name a key; nothing readable is written anywhere else. A missing key shows the key
itself, which a test catches (``tests/integration/web``), rather than failing the page.
"""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("de", "en")
DEFAULT = "de"

TEXTS: dict[str, tuple[str, str]] = {
    "app_name": ("Inkasso-Gateway", "Collection gateway"),
    "skip": ("Zum Inhalt", "Skip to content"),
    "login": ("Anmelden", "Log in"),
    "logout": ("Abmelden", "Log out"),
    "username": ("Benutzername", "Username"),
    "password": ("Passwort", "Password"),
    "login_failed": ("Benutzername oder Passwort falsch.", "Wrong username or password."),
    "login_throttled": ("Zu viele Fehlversuche. Bitte in {seconds} Sekunden erneut versuchen.",
                        "Too many failed attempts. Please try again in {seconds} seconds."),
    "logged_out": ("Sie sind abgemeldet.", "You are logged out."),
    "signed_in_as": ("Angemeldet als {login}", "Signed in as {login}"),
    "operator": ("Betrieb", "Operator"),
    "nav_claims": ("Forderungen", "Claims"),
    "nav_runs": ("Übergaben", "Collection runs"),
    "nav_upload": ("Datei hochladen", "Upload a file"),
    "nav_outbox": ("Postausgang", "Outbox"),
    "language": ("Sprache", "Language"),
    # claims list
    "claims_title": ("Forderungen", "Claims"),
    "filter_state": ("Status", "State"),
    "all_states": ("alle", "all"),
    "search": ("Suche (Referenz, Rechnungsnr., Schuldnername)", "Search (reference, invoice no., debtor name)"),
    "search_button": ("Suchen", "Search"),
    "filter_button": ("Filtern", "Filter"),
    "clear_search": ("Suche löschen", "Clear search"),
    "searching_for": ("Gefiltert nach Ihrer Suche.", "Filtered by your search."),
    "col_reference": ("Referenz", "Reference"),
    "col_invoice": ("Rechnungsnr.", "Invoice no."),
    "col_received": ("Eingang", "Received"),
    "col_state": ("Status", "State"),
    "col_open": ("Offen", "Open"),
    "col_principal": ("Hauptforderung", "Principal"),
    "col_partner": ("Inkassopartner", "Agency"),
    "col_last_change": ("Letzte Änderung", "Last change"),
    "col_client": ("Mandant", "Client"),
    "col_claims": ("Forderungen", "Claims"),
    "unread_marker": ("neu", "new"),
    "why_marker": ("Warum?", "Why?"),
    "no_claims": ("Keine Forderungen gefunden.", "No claims found."),
    "total": ("{shown} von {total}", "{shown} of {total}"),
    "total_atleast": ("{shown} von mindestens {total}", "{shown} of at least {total}"),
    "prev": ("Zurück", "Previous"),
    "next": ("Weiter", "Next"),
    # one claim
    "claim_title": ("Forderung {ref}", "Claim {ref}"),
    "claim_data": ("Forderungsdaten", "Claim data"),
    "debtor": ("Schuldner", "Debtor"),
    "name": ("Name", "Name"),
    "birth_date": ("Geburtsdatum", "Date of birth"),
    "address": ("Anschrift", "Address"),
    "email": ("E-Mail", "E-mail"),
    "phone": ("Telefon", "Phone"),
    "iban": ("IBAN", "IBAN"),
    "representative": ("Gesetzlicher Vertreter", "Legal representative"),
    "invoice_date": ("Rechnungsdatum", "Invoice date"),
    "due_date": ("Fällig", "Due"),
    "claim_type": ("Art", "Type"),
    "reason": ("Grund", "Reason"),
    "run": ("Übergabe", "Collection run"),
    "labels": ("Markierungen", "Labels"),
    "account": ("Forderungskonto", "Case account"),
    "acc_principal": ("Hauptforderung", "Principal"),
    "acc_fees": ("Gebühren", "Fees"),
    "acc_interest": ("Zinsen", "Interest"),
    "acc_agency_costs": ("Inkassokosten", "Agency costs"),
    "acc_paid_direct": ("Direkt an Sie gezahlt", "Paid to you directly"),
    "acc_paid_agency": ("An das Inkasso gezahlt", "Paid to the agency"),
    "acc_payouts": ("An Sie ausgezahlt", "Paid out to you"),
    "acc_written_off": ("Abgeschrieben", "Written off"),
    "acc_open": ("Offen", "Open"),
    "acc_overpaid": ("Überzahlt", "Overpaid"),
    "acc_file_number": ("Aktenzeichen des Partners", "Partner's file number"),
    "acc_stage": ("Verfahrensstand", "Stage"),
    "why_title": ("Warum nicht übergeben?", "Why not handed over?"),
    "what_to_do": ("Was tun", "What to do"),
    "history": ("Verlauf", "History"),
    "ev_time": ("Zeit", "Time"),
    "ev_kind": ("Ereignis", "Event"),
    "ev_actor": ("Von", "By"),
    "messages": ("Nachrichten", "Messages"),
    "no_messages": ("Noch keine Nachrichten.", "No messages yet."),
    "to_partner": ("an das Inkasso", "to the agency"),
    "from_partner": ("vom Inkasso", "from the agency"),
    "message_text": ("Nachricht an das Inkasso", "Message to the agency"),
    "send": ("Senden", "Send"),
    "message_sent": ("Nachricht gesendet.", "Message sent."),
    "actions": ("Aktionen", "Actions"),
    "no_actions": ("Für diese Forderung sind keine Aktionen möglich.", "No actions are possible for this claim."),
    "cancel_claim": ("Forderung stornieren", "Cancel the claim"),
    "cancel_reason": ("Grund (optional)", "Reason (optional)"),
    "cancelled": ("Storno erfasst.", "Cancellation recorded."),
    "report_payment": ("Direktzahlung melden", "Report a direct payment"),
    "amount": ("Betrag", "Amount"),
    "payment_date": ("Zahlungsdatum", "Payment date"),
    "overpayment": ("Überzahlung (mehr als offen)", "Overpayment (more than open)"),
    "payment_reported": ("Zahlung gemeldet.", "Payment reported."),
    "read_only": ("Ihre Anmeldung darf nur lesen.", "Your login may only read."),
    "refused": ("Nicht möglich: {detail}", "Not possible: {detail}"),
    # runs
    "runs_title": ("Übergaben", "Collection runs"),
    "run_title": ("Übergabe {ref}", "Collection run {ref}"),
    "col_run": ("Nummer", "Number"),
    "col_file": ("Datei", "File"),
    "col_channel": ("Kanal", "Channel"),
    "col_status": ("Status", "Status"),
    "col_rows": ("Zeilen", "Rows"),
    "col_accepted": ("Angenommen", "Accepted"),
    "col_held": ("Zurückgehalten", "Held"),
    "col_rejected": ("Abgelehnt", "Rejected"),
    "col_total": ("Summe", "Total"),
    "no_runs": ("Noch keine Übergaben.", "No collection runs yet."),
    "handover": ("Übergabe an das Inkasso", "Handover to the agency"),
    "findings": ("Hinweise", "Findings"),
    "release_title": ("Zurückgehaltene Forderungen freigeben", "Release held claims"),
    "release_help": ("Angehakte Forderungen werden an das Inkasso übergeben. Minderjährige Schuldner ohne "
                     "Vertreter sind markiert und nicht angehakt.",
                     "Ticked claims are handed over to the agency. Minor debtors without a representative are "
                     "marked and not ticked."),
    "include": ("Übergeben", "Hand over"),
    "minor": ("minderjährig", "minor"),
    "release": ("Freigeben", "Release"),
    "released": ("{n} Forderung(en) freigegeben.", "{n} claim(s) released."),
    "release_none": ("Keine Forderung ausgewählt.", "No claim selected."),
    "skipped": ("{n} nicht freigegeben: {why}", "{n} not released: {why}"),
    # upload
    "upload_title": ("Datei hochladen", "Upload a file"),
    "upload_help": ("Jedes Format Ihrer Zuordnung (CSV, XLSX, XLS, ODS, XML). Die Antwort erscheint als Tabelle.",
                    "Any format of your mapping (CSV, XLSX, XLS, ODS, XML). The answer is shown as a table."),
    "file": ("Datei", "File"),
    "upload": ("Hochladen", "Upload"),
    "upload_missing": ("Bitte eine Datei wählen.", "Please choose a file."),
    "upload_too_large": ("Die Datei ist zu groß.", "The file is too large."),
    "upload_busy": ("Gerade wird eine andere Datei verarbeitet. Bitte gleich erneut versuchen.",
                    "Another file is being processed. Please try again shortly."),
    "ack_title": ("Ergebnis: {file}", "Result: {file}"),
    "ack_summary": ("{rows} Zeilen: {accepted} angenommen, {held} zurückgehalten, {rejected} abgelehnt.",
                    "{rows} rows: {accepted} accepted, {held} held, {rejected} rejected."),
    "ack_duplicate": ("Diese Datei wurde bereits als {ref} übergeben.", "This file was already submitted as {ref}."),
    "ack_failed": ("Die Datei konnte nicht gelesen werden: {error}", "The file could not be read: {error}"),
    "ack_cut": ("Nur die ersten Zeilen sind hier gezeigt; die Antwortdatei hat alle.",
                "Only the first rows are shown here; the ack file has all of them."),
    "col_row": ("Zeile", "Row"),
    "col_outcome": ("Ergebnis", "Outcome"),
    "col_column": ("Spalte", "Column"),
    "col_message": ("Hinweis", "Message"),
    "col_claim": ("Forderung", "Claim"),
    "outcome_accepted": ("angenommen", "accepted"),
    "outcome_held": ("zurückgehalten", "held"),
    "outcome_rejected": ("abgelehnt", "rejected"),
    "outcome_conflict": ("abgelehnt (Konflikt)", "rejected (conflict)"),
    "outcome_duplicate": ("doppelt", "duplicate"),
    # operator
    "outbox_title": ("Postausgang", "Outbox"),
    "only_dead": ("Nur unzustellbare", "Dead letters only"),
    "all_rows": ("Alle", "All"),
    "col_id": ("Nr.", "No."),
    "col_operation": ("Vorgang", "Operation"),
    "col_attempts": ("Versuche", "Attempts"),
    "col_error": ("Fehler", "Error"),
    "retry": ("Erneut senden", "Retry"),
    "retried": ("Zeile {id} wird erneut gesendet ({n} Forderung(en) wieder eingereiht).",
                "Row {id} will be sent again ({n} claim(s) queued again)."),
    "no_outbox": ("Keine Einträge.", "No rows."),
    "all_clients": ("Alle Mandanten", "All clients"),
    # errors
    "not_found": ("Nicht gefunden.", "Not found."),
    "forbidden": ("Diese Aktion ist nicht erlaubt.", "This action is not allowed."),
    "csrf_failed": ("Das Formular ist abgelaufen. Bitte die Seite neu laden.",
                    "The form has expired. Please reload the page."),
    "server_error": ("Ein Fehler ist aufgetreten; er wurde protokolliert.", "An error occurred; it has been logged."),
    "back": ("Zurück", "Back"),
}

STATES: dict[str, tuple[str, str]] = {
    "received": ("eingegangen", "received"), "held": ("zurückgehalten", "held"),
    "queued": ("wartet auf Übergabe", "queued"), "delivering": ("wird übergeben", "delivering"),
    "handed_over": ("übergeben", "handed over"), "failed": ("Übergabe fehlgeschlagen", "failed"),
    "in_progress": ("in Bearbeitung", "in progress"), "paused": ("pausiert", "paused"),
    "disputed": ("bestritten", "disputed"), "instalment_plan": ("Ratenzahlung", "instalment plan"),
    "closed_paid": ("bezahlt", "paid"), "closed_uncollectible": ("uneinbringlich", "uncollectible"),
    "cancelled_by_client": ("storniert", "cancelled"), "cancelled_by_partner": ("vom Inkasso storniert",
                                                                                 "cancelled by the agency"),
    "rejected": ("abgelehnt", "rejected"),
    # submissions and outbox rows
    "processing": ("in Verarbeitung", "processing"), "completed": ("abgeschlossen", "completed"),
    "completed_with_errors": ("mit Fehlern abgeschlossen", "completed with errors"),
    "duplicate": ("doppelt", "duplicate"), "pending": ("wartend", "pending"), "leased": ("in Arbeit", "working"),
    "done": ("erledigt", "done"), "dead": ("unzustellbar", "dead letter"),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)`` in ``lang``: the text with ``{name}`` filled in."""
    i = LANGS.index(lang) if lang in LANGS else 0

    def t(key: str, **values: object) -> str:
        pair = TEXTS.get(key) or STATES.get(key)
        text = pair[i] if pair else key
        return text.format(**values) if values else text
    return t


def state_name(lang: str, state: str) -> str:
    """A claim, run or outbox state in words."""
    pair = STATES.get(state)
    return pair[LANGS.index(lang) if lang in LANGS else 0] if pair else state
