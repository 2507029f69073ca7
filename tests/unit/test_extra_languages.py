"""A language the registry supplies through the policy (``[transparency].extra_catalogs``: a folder holding
``LANG/LC_MESSAGES/messages.po``): offered by the register, the letter and the web app only when its catalog
translates every message of the current messages.pot; refused in one line naming the file and the first missing
message otherwise; an unknown language code refused; without the key, the built-in languages only."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po
from starlette.testclient import TestClient
from tests.conftest import STEWARD, people

from research_kit.actions import transparency as actions
from research_kit.core import i18n
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace
from research_kit.model.national_id import make
from research_kit.transparency import labels, person
from research_kit.web.app import create_app
from research_kit.web.http import LANG_COOKIE

MARK = "[lb] "  # every Luxembourgish text of the test's catalog: the French one behind this marker
LETZEBUERGESCH = "Lëtzebuergesch"


def _lb_catalog(folder: Path, *, leave_out: str | None = None, code: str = "lb") -> Path:
    """A catalog of ``code`` in ``folder`` translating every message of messages.pot (the French text, marked),
    but ``leave_out``; its path."""
    french = {m.id if isinstance(m.id, str) else m.id[0]: m for m in i18n.read_catalog(i18n.catalog_path("fr"))}
    catalog = Catalog(locale="lb", domain=i18n.DOMAIN)
    for message in i18n.read_catalog(i18n.TEMPLATE):
        if not message.id:
            continue
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        if msgid == leave_out:
            continue
        string = french[msgid].string
        marked = MARK + string if isinstance(string, str) else tuple(MARK + s for s in string)
        catalog.add(message.id, marked)
    po = folder / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    po.parent.mkdir(parents=True)
    with po.open("wb") as fh:
        write_po(fh, catalog)
    return po


def _supply(ws: Workspace, setting: str) -> None:
    policy = ws.root / "research-kit.toml"
    text = policy.read_text(encoding="utf-8")
    assert 'extra_catalogs = ""' in text  # init writes the key, empty
    policy.write_text(text.replace('extra_catalogs = ""', f"extra_catalogs = {json.dumps(setting)}"), "utf-8")


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    people(workspace)  # a steward (who publishes and answers a person) and a committee member
    return workspace


def test_a_complete_catalog_is_offered_named_in_itself_with_luxembourgs_forms(ws: Workspace) -> None:
    _lb_catalog(ws.root / "catalogs")
    _supply(ws, "catalogs")  # relative to the workspace
    languages = i18n.offered(ws.root, ws.policy().transparency.extra_catalogs)
    assert languages.names == {**i18n.LANGUAGES, "lb": LETZEBUERGESCH}
    assert languages.gettext("lb")(labels.REGISTER_TITLE) == MARK + "Registre de transparence"
    assert i18n.locale_of("lb") == "lb_LU"
    assert i18n.format_day("2027-03-03", "lb") == "3. Mäerz 2027"
    assert i18n.format_number(1234, "lb") == "1.234"
    assert i18n.offered(Path("/"), str(ws.root / "catalogs")).names == languages.names  # an absolute folder


def test_the_register_is_published_in_the_supplied_language_too(ws: Workspace, tmp_path: Path) -> None:
    _lb_catalog(ws.root / "catalogs")
    _supply(ws, "catalogs")
    done = actions.publish(ws, actor=STEWARD, out=tmp_path / "register")
    assert done.languages == ("en", "fr", "de", "lb")
    page = (done.out / "lb" / "index.html").read_text(encoding="utf-8")
    assert '<html lang="lb">' in page
    assert MARK + "Registre de transparence" in page
    assert LETZEBUERGESCH in page
    english = (done.out / "en" / "index.html").read_text(encoding="utf-8")
    assert 'href="../lb/index.html"' in english
    assert LETZEBUERGESCH in english
    assert LETZEBUERGESCH in (done.out / "index.html").read_text(encoding="utf-8")
    assert json.loads((done.out / "register.json").read_text(encoding="utf-8"))["languages"] == [
        "en", "fr", "de", "lb"
    ]  # fmt: skip


def test_the_letter_in_the_supplied_language(ws: Workspace, tmp_path: Path, key_file: Path) -> None:
    _lb_catalog(ws.root / "catalogs")
    _supply(ws, "catalogs")
    stranger = make(date(1990, 6, 15), 999)  # a valid national ID the registry does not hold
    done = actions.person(ws, actor=STEWARD, lines=[stranger], out=tmp_path / "letter.html", lang="lb")
    assert done.lang == "lb"
    page = done.out.read_text(encoding="utf-8")
    assert '<html lang="lb">' in page
    assert MARK in page
    assert stranger not in page


def test_an_incomplete_catalog_is_refused_in_one_line_naming_the_file_and_the_missing_message(
    ws: Workspace, tmp_path: Path
) -> None:
    po = _lb_catalog(ws.root / "catalogs", leave_out=labels.REGISTER_TITLE)
    _supply(ws, "catalogs")
    expected = f"{po}: incomplete for the current messages.pot: {labels.REGISTER_TITLE!r} is missing"
    with pytest.raises(BadInput) as refused:
        actions.publish(ws, actor=STEWARD, out=tmp_path / "register")
    assert str(refused.value) == expected
    assert not (tmp_path / "register").exists()
    with pytest.raises(BadInput) as letter:
        actions.person(ws, actor=STEWARD, lines=[], out=tmp_path / "letter.html", lang="lb")  # before the ID
    assert str(letter.value) == expected
    assert "\n" not in expected
    # The letter in another language is written as ever; the web app leaves lb out (below).
    assert i18n.offered(ws.root, "catalogs", strict=False) is i18n.BUILT_IN


def test_a_placeholder_left_out_is_a_gap() -> None:
    catalog = Catalog(locale="lb")
    catalog.add("%(n)s files", "Fichieren")
    template = Catalog()
    template.add("%(n)s files")
    assert i18n.first_gap(catalog, template) == "'%(n)s files': placeholders differ in 'Fichieren'"


@pytest.mark.parametrize(
    ("string", "gap"),
    [
        ("%(n)s Fichieren, 100 %", "a lone % in '%(n)s Fichieren, 100 %' (write a literal % as %%)"),
        ("%(n)s Fichieren, %s", "a lone % in '%(n)s Fichieren, %s' (write a literal % as %%)"),
        ("%%(n)s Fichieren", "placeholders differ in '%%(n)s Fichieren'"),  # a literal %, then "(n)s"
        ("%(n)s Fichieren, 100 %%", None),  # Jinja writes 100 %
    ],
)
def test_a_percent_sign_jinja_cannot_format_is_a_gap(string: str, gap: str | None) -> None:
    catalog = Catalog(locale="lb")
    catalog.add("%(n)s files", string)
    template = Catalog()
    template.add("%(n)s files")
    assert i18n.first_gap(catalog, template) == (None if gap is None else f"'%(n)s files': {gap}")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("(n != 1) + x", "unusable (ValueError: "),  # gettext cannot compile it
        ("n / 0", "unusable: the Plural-Forms rule fails for n=0 (ZeroDivisionError: "),
        ("n", "unusable: the Plural-Forms rule gives form 2 for n=2, not one of its 2"),
    ],
)
def test_a_plural_rule_gettext_cannot_use_is_refused_in_one_line(
    ws: Workspace, tmp_path: Path, rule: str, problem: str
) -> None:
    po = _lb_catalog(ws.root / "catalogs")
    text = po.read_text(encoding="utf-8")
    header = f'"Plural-Forms: nplurals=2; plural={rule};\\n"'
    po.write_text(re.sub(r'"Plural-Forms: [^"]*"', lambda _: header, text), "utf-8")
    _supply(ws, "catalogs")
    with pytest.raises(BadInput) as refused:
        actions.publish(ws, actor=STEWARD, out=tmp_path / "register")
    assert str(refused.value).startswith(f"{po}: {problem}")
    assert "\n" not in str(refused.value)
    assert i18n.offered(ws.root, "catalogs", strict=False) is i18n.BUILT_IN  # and the web app leaves it out


@pytest.mark.parametrize("markup", ["<script>alert(1)</script>", "<b>", "a > b"])
def test_markup_in_a_supplied_translation_is_refused(ws: Workspace, tmp_path: Path, markup: str) -> None:
    po = _lb_catalog(ws.root / "catalogs")
    text = po.read_text(encoding="utf-8")
    damaged = text.replace(f'msgstr "{MARK}Registre de transparence"', f'msgstr "{MARK}Registre {markup}"', 1)
    assert damaged != text
    po.write_text(damaged, encoding="utf-8")
    _supply(ws, "catalogs")
    with pytest.raises(BadInput) as refused:
        actions.publish(ws, actor=STEWARD, out=tmp_path / "register")
    assert str(refused.value).startswith(f"{po}: unusable: {labels.REGISTER_TITLE!r}: markup its English does not")
    assert not (tmp_path / "register").exists()
    assert i18n.offered(ws.root, "catalogs", strict=False) is i18n.BUILT_IN


def test_markup_its_english_has_is_kept() -> None:
    catalog = Catalog(locale="lb")
    catalog.add("<b>%(n)s</b> files", "<b>%(n)s</b> Fichieren")
    catalog.add("a <i>b</i>", "<i>b</i> a <i>c</i>")
    template = Catalog()
    template.add("<b>%(n)s</b> files")
    assert i18n.first_markup(catalog, template) is None
    template.add("a <i>b</i>")
    assert i18n.first_markup(catalog, template) == (
        "'a <i>b</i>': markup its English does not have in '<i>b</i> a <i>c</i>' (< and > are refused)"
    )


def test_an_unknown_language_code_is_refused(ws: Workspace, tmp_path: Path) -> None:
    po = _lb_catalog(ws.root / "catalogs", code="xx")
    _supply(ws, "catalogs")
    with pytest.raises(BadInput, match=re.escape(f"{po}: 'xx' is not a language code Babel knows")):
        actions.publish(ws, actor=STEWARD, out=tmp_path / "register")
    with pytest.raises(BadInput, match=re.escape(f"{po}: 'xx' is not a language code Babel knows")):
        actions.person(ws, actor=STEWARD, lines=[], out=tmp_path / "letter.html", lang="xx")
    with pytest.raises(BadInput, match=r"--lang 'zz': one of en, fr, de$"):  # a language nobody supplies
        actions.person(ws, actor=STEWARD, lines=[], out=tmp_path / "letter.html", lang="zz")
    with pytest.raises(BadInput, match=r"'fr' is built in"):
        i18n.offered(tmp_path, str(_lb_catalog(tmp_path / "more", code="fr").parents[2]))
    with pytest.raises(BadInput, match=r"extra_catalogs: .*nowhere: no such folder"):
        i18n.offered(ws.root, "nowhere")


def test_without_the_key_nothing_changes(ws: Workspace, tmp_path: Path) -> None:
    _lb_catalog(ws.root / "catalogs")  # present, but not named by the policy
    assert ws.policy().transparency.extra_catalogs == ""
    assert i18n.offered(ws.root, "") is i18n.BUILT_IN
    assert actions.publish(ws, actor=STEWARD, out=tmp_path / "register").languages == ("en", "fr", "de")
    assert not (tmp_path / "register" / "lb").exists()
    with pytest.raises(BadInput, match=r"--lang 'lb': one of en, fr, de$"):
        actions.person(ws, actor=STEWARD, lines=[], out=tmp_path / "letter.html", lang="lb")
    assert person.render(person.Report(date(2027, 3, 3), (), (), (), (), (), None), "fr").count(MARK) == 0


@pytest.mark.parametrize("complete", [True, False])
def test_the_web_apps_switch_offers_a_complete_supplied_language_only(ws: Workspace, complete: bool) -> None:
    _lb_catalog(ws.root / "catalogs", leave_out=None if complete else labels.REGISTER_TITLE)
    _supply(ws, "catalogs")
    client = TestClient(create_app(ws))
    signin = client.get("/signin")
    assert (LETZEBUERGESCH in signin.text) is complete
    switched = client.get("/language?lang=lb&next=/signin", follow_redirects=False)
    assert switched.status_code == 303
    assert (LANG_COOKIE in switched.headers.get("set-cookie", "")) is complete
    page = client.get("/signin", headers={"accept-language": "lb"})
    assert page.headers["content-language"] == ("lb" if complete else "en")
    assert (MARK in page.text) is complete
