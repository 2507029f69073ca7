"""The web app in English, French and German, the transparency page and the steward's person letter.

The language: the header's switch (``/language?lang=fr``, a cookie), else the browser's Accept-Language, else
English. The letter: ``POST /transparency/person`` calls the action ``research-kit transparency person`` calls,
for a steward only, and returns the letter as a download that never holds the national ID, nor does anything
else the request leaves behind (the page, the headers, the audit log).
"""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from tests.functional.webapp import S1, browser, field

from research_kit.core import audit
from research_kit.core.workspace import Workspace
from research_kit.model.national_id import make
from research_kit.web.http import accepted_language

# With the slow tests (CI runs them too), so that make test stays under six minutes on two cores.
pytestmark = pytest.mark.slow

STRANGER = make(date(1990, 6, 15), 999)  # a valid national ID the registry does not hold


def _title(page: str) -> str:
    found = re.search(r"<title>(.*?)</title>", page, re.S)
    assert found is not None
    return html.unescape(found.group(1))


@pytest.mark.parametrize(
    ("lang", "title", "heading", "nav"),
    [
        ("en", "Requests · research-kit", "Review requests", "Transparency register"),
        ("fr", "Demandes · research-kit", "Demandes de revue", "Registre de transparence"),
        ("de", "Anträge · research-kit", "Prüfanträge", "Transparenzregister"),
    ],
)
def test_the_queue_in_each_language_by_the_switch(
    review_ws: Workspace, lang: str, title: str, heading: str, nav: str
) -> None:
    carla = browser(review_ws, "carla")
    switched = carla.get(f"/language?lang={lang}&next=/requests%3Fshow%3Dall")
    assert (switched.status_code, switched.headers["location"]) == (303, "/requests?show=all")
    page = carla.get("/requests")
    assert page.status_code == 200
    assert page.headers["content-language"] == lang
    assert f'<html lang="{lang}">' in page.text
    assert _title(page.text) == title
    assert f"<h1>{heading}</h1>" in page.text
    assert nav in html.unescape(page.text)
    assert f'<strong lang="{lang}">' in page.text  # the switch marks the language shown


def test_every_page_renders_in_french_and_german_and_keeps_escaping(review_ws: Workspace) -> None:
    for lang, words in (("fr", ("Votre vote", "Commentaires", "Budget de confidentialité de l'étude s1")),
                        ("de", ("Ihre Stimme", "Kommentare", "Privatsphäre-Budget der Studie s1"))):  # fmt: skip
        carla = browser(review_ws, "carla")
        carla.get(f"/language?lang={lang}")
        page = html.unescape(carla.get(f"/requests/{S1}").text)
        for word in words:
            assert word in page, (lang, word)
        raw = carla.get(f"/requests/{S1}").text
        assert "<script>alert" not in raw
        assert "&lt;script&gt;" in raw
        rita = browser(review_ws, "rita")  # a researcher: the application form lists the purposes
        rita.get(f"/language?lang={lang}")
        purposes = html.unescape(rita.get("/permits").text)
        assert {"fr": "statistiques officielles", "de": "amtliche Statistik"}[lang] in purposes
        assert {"fr": "Demander une autorisation", "de": "Eine Datengenehmigung beantragen"}[lang] in purposes
        for path in ("/permits", "/budget", "/audit", "/transparency"):
            got = carla.get(path)
            assert got.status_code == 200, (lang, path)
            assert got.headers["content-language"] == lang
        signed_out = browser(review_ws)
        signed_out.get(f"/language?lang={lang}")
        assert signed_out.get("/signin").headers["content-language"] == lang


def test_a_form_done_message_and_an_error_page_are_translated(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    carla.get("/language?lang=fr")
    done = carla.post(f"/requests/{S1}/comment", {"comment": "vu"})
    assert done.status_code == 303
    assert "Votre commentaire est ajouté." in html.unescape(carla.get(done.headers["location"]).text)
    missing = carla.get("/requests/999")
    assert missing.status_code == 404
    assert "Il n'existe pas de demande de revue 999." in html.unescape(missing.text)
    forged = carla.post(f"/requests/{S1}/comment", {"comment": "x"}, csrf="forged")  # CSRF as before
    assert forged.status_code == 403
    assert "ce formulaire a expiré" in html.unescape(forged.text)


def test_the_browser_language_is_the_default_and_english_the_fallback(review_ws: Workspace) -> None:
    assert accepted_language("de-LU,de;q=0.9,en;q=0.5") == "de"
    assert accepted_language("en-GB;q=0.4, fr-LU;q=0.8") == "fr"
    assert accepted_language("lb, pt;q=0.9") == "en"
    assert accepted_language("") == "en"
    b = browser(review_ws)
    assert b.client.get("/signin", headers={"accept-language": "fr-LU,fr;q=0.9"}).headers["content-language"] == "fr"
    assert b.get("/signin").headers["content-language"] == "en"
    b.get("/language?lang=de")  # the switch wins over the browser
    assert b.client.get("/signin", headers={"accept-language": "fr"}).headers["content-language"] == "de"
    unknown = b.get("/language?lang=lb&next=https://elsewhere.example/")
    assert (unknown.status_code, unknown.headers["location"]) == (303, "/requests")  # only this app's paths
    assert b.get("/signin").headers["content-language"] == "de"  # an unknown language changed nothing


def _patient(registry_template: Path) -> str:
    """A national ID the registry holds (the first patient of e1's export)."""
    raw = pl.read_parquet(registry_template.parent / "raw-e1" / "patients.parquet")
    national_id: str = raw["national_id"][0]
    return national_id


def _letter_lines(ws: Workspace) -> list[str]:
    return [str(e) for e in audit.read_entries(ws.audit_path) if e["action"] == "transparency.person"]


def test_a_steward_downloads_a_persons_letter_and_the_id_is_nowhere(
    review_ws: Workspace, registry_template: Path
) -> None:
    national_id = _patient(registry_template)
    sam = browser(review_ws, "sam")
    sam.get("/language?lang=de")
    page = sam.get("/transparency")
    assert 'type="password" id="person-id" name="national_id" autocomplete="off"' in page.text
    assert 'method="post" action="/transparency/person"' in page.text
    got = sam.post("/transparency/person", {"national_id": national_id, "lang": "fr"})
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == 'attachment; filename="where-was-my-data-used-fr.html"'
    assert got.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="fr">' in got.text
    assert "Où mes données ont-elles été utilisées ?" in got.text
    assert "e1" in got.text  # the extract version that holds them
    everything = got.text + str(dict(got.headers)) + str(got.url)
    assert national_id not in everything
    assert national_id[:11] not in everything
    lines = _letter_lines(review_ws)
    assert len(lines) == 1
    assert national_id not in lines[0]
    assert "'lang': 'fr'" in lines[0]
    assert national_id not in review_ws.audit_path.read_text(encoding="utf-8")
    assert not list(Path(review_ws.root).rglob("letter.html"))  # the scratch copy is gone

    stranger = sam.post("/transparency/person", {"national_id": STRANGER})  # the policy's language (fr)
    assert stranger.status_code == 200
    assert "where-was-my-data-used-fr.html" in stranger.headers["content-disposition"]
    assert STRANGER not in stranger.text


def test_only_a_steward_gets_a_letter_by_a_post_with_the_sessions_token(
    review_ws: Workspace, registry_template: Path
) -> None:
    national_id = _patient(registry_template)
    for who in ("carla", "rita"):
        b = browser(review_ws, who)
        page = b.get("/transparency").text
        assert 'name="national_id"' not in page  # the form is a steward's
        refused = b.post("/transparency/person", {"national_id": national_id, "lang": "en"})
        assert refused.status_code == 403
        assert "content-disposition" not in refused.headers
        assert "needs the steward role" in refused.text
        assert national_id not in refused.text
    sam = browser(review_ws, "sam")
    forged = sam.post("/transparency/person", {"national_id": national_id}, csrf="forged")
    assert forged.status_code == 403
    assert national_id not in forged.text
    assert sam.get("/transparency/person").status_code == 405  # POST only: an ID never rides in an address
    malformed = sam.post("/transparency/person", {"national_id": national_id[:-1] + "x"})
    assert malformed.status_code == 400
    assert "standard input: line 1: not a national ID" in html.unescape(malformed.text)
    assert national_id[:11] not in malformed.text
    assert 'value="' + national_id[:11] not in malformed.text
    assert _letter_lines(review_ws) == []  # nothing refused was audited as written
    assert field(sam.get("/transparency").text, "csrf")
