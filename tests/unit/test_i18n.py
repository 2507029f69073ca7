"""Every string a person reads on the transparency pages and the web app is translated into every language, and
the catalogs follow the code: extracting the strings again (babel.cfg, Babel's own extractors) gives exactly the
messages.pot and .po files committed, and each .po entry has a translation, not fuzzy, with the same placeholders as
its English."""

from __future__ import annotations

import io
import re
from pathlib import Path

import jinja2
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.support import Translations

from research_kit.core import i18n, permits
from research_kit.core.config import TransparencyPolicy
from research_kit.core.errors import BadInput
from research_kit.model.tables import TABLE_NAMES
from research_kit.transparency import labels
from research_kit.transparency.register import TEMPLATES
from research_kit.web.http import HERE as WEB

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE]
UPDATE = (
    "run: .venv/bin/pybabel extract -F babel.cfg --no-location --sort-output -o src/research_kit/locale/messages.pot . "
    "&& .venv/bin/pybabel update -i src/research_kit/locale/messages.pot -d src/research_kit/locale --no-wrap "
    "--ignore-obsolete, then translate what it added (docs/transparency.md#languages)"
)


def _key(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


@pytest.fixture(scope="module")
def extracted() -> dict[str, Message]:
    """The strings of the code and templates now, by msgid, extracted as pybabel does with babel.cfg."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(ROOT, method_map, options_map):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    found = {_key(m): m for m in catalog if m.id}
    assert len(found) > 50  # the extraction found the pages' strings
    return found


def _catalog(path: Path, lang: str | None = None) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=lang)


def test_messages_pot_holds_exactly_the_strings_of_the_code_and_templates(extracted: dict[str, Message]) -> None:
    template = {_key(m): m.id for m in _catalog(i18n.LOCALE_DIR / "messages.pot") if m.id}
    assert set(template) == set(extracted), UPDATE
    assert template == {k: m.id for k, m in extracted.items()}, UPDATE  # plural forms too


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_string_has_a_translation_with_the_same_placeholders(lang: str, extracted: dict[str, Message]) -> None:
    catalog = _catalog(i18n.catalog_path(lang), lang)
    entries = {_key(m): m for m in catalog if m.id}
    assert set(entries) == set(extracted), f"{lang}: the .po lags behind the code; {UPDATE}"
    assert not catalog.obsolete, f"{lang}: obsolete entries; {UPDATE}"
    gap = i18n.first_gap(catalog, extracted.values())  # the check a supplied language's catalog passes too
    assert gap is None, f"{lang}: {gap}"


# Jinja blocks and expressions, then markup: what is left of a template is text shown as written, untranslated.
_JINJA = re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_MARKUP = re.compile(r"<style.*?</style>|<[^>]*>|&\w+;", re.S)
SHOWN_AS_WRITTEN = {
    "register", "json",  # the link to register.json names the file
    "research", "kit", "transparency", "publish", "OUT",  # the product's name; a command, as typed
    "rho",  # the budget's unit (zero-concentrated DP), a symbol as ε is
    "sha",  # sha256, the checksum's name
    "review", "show",  # the command 'review show --json'
    "fail",  # a disclosure check's severity code, shown as written like every state and severity (pass, review)
}  # fmt: skip
PAGES = [*sorted(TEMPLATES.glob("*.html")), *sorted((WEB / "templates").glob("*.html"))]


@pytest.mark.parametrize("template", PAGES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_no_template_shows_text_outside_gettext(template: Path) -> None:
    text = _MARKUP.sub(" ", _JINJA.sub(" ", template.read_text(encoding="utf-8")))
    words = set(re.findall(r"[^\W\d_]{2,}", text)) - SHOWN_AS_WRITTEN
    assert not words, f"{template.name} shows {sorted(words)} untranslated: wrap it in {{% trans %}} or _()"


def test_the_web_app_strings_are_extracted(extracted: dict[str, Message]) -> None:
    """The web app's templates and the messages its code marks with N_() are in the catalogs."""
    for msgid in ("Review requests", "Your vote is recorded.", "There is no review request %(id)s."):
        assert msgid in extracted


def test_every_code_the_catalog_holds_has_its_words() -> None:
    assert set(labels.CATEGORY) == set(permits.CATEGORIES)
    assert set(labels.TIER) == set(permits.TIERS)
    assert set(labels.STATUS) == {*permits.STATES, permits.EXPIRED}
    assert set(labels.PUBLICATION_STATUS) == set(permits.PUBLICATION)
    assert set(labels.TABLE) == set(TABLE_NAMES)


def test_the_policy_offers_the_languages_the_pages_are_written_in() -> None:
    import dataclasses

    field = next(f for f in dataclasses.fields(TransparencyPolicy) if f.name == "default_language")
    assert field.metadata["choices"] == list(i18n.LANGUAGES)
    assert field.default in i18n.LANGUAGES


def test_catalogs_compile_from_the_po_and_translate() -> None:
    for lang, expected in (("fr", "Registre de transparence"), ("de", "Transparenzregister")):
        compiled = Translations(io.BytesIO(i18n.compile_po(i18n.catalog_path(lang), lang)))
        assert compiled.gettext(labels.REGISTER_TITLE) == expected
        assert i18n.gettext_of(lang)(labels.REGISTER_TITLE) == expected
        assert compiled.ngettext("%(n)s query", "%(n)s queries", 2) % {"n": 2} in ("2 requêtes", "2 Abfragen")
    assert i18n.gettext_of("en")(labels.REGISTER_TITLE) == "Transparency register"
    with pytest.raises(BadInput, match=r"--lang 'lb': one of en, fr, de"):
        i18n.check_language("lb")


def test_templates_render_translated_and_escaped() -> None:
    env = i18n.environment(jinja2.DictLoader({"t.html": "{{ _('Holder') }}: {{ x }} · {{ '2027-03-03'|day }}"}), "de")
    assert env.get_template("t.html").render(x="<b>") == "Inhaber: &lt;b&gt; · 3. März 2027"
    assert i18n.format_quarter("2026-Q2", "fr") == "T2 2026"
    assert i18n.format_number(0.8134, "fr") == "0,813"
