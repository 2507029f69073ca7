"""The languages of the pages people read: gettext catalogs managed with Babel, used by Jinja2 templates.

Strings are written in English, in templates (``{% trans %}``, ``_()``) and in
code (``N_()`` marks a label that a template translates later). ``babel.cfg`` at
the repository's root says where they are extracted from into
``src/research_kit/locale/messages.pot``; each language's catalog is
``locale/LANG/LC_MESSAGES/messages.po`` (committed, translated by hand).

The ``.po`` files are the source: a page's catalog is compiled from its
``.po`` in memory, once per process (about a millisecond), unless a
``messages.mo`` at least as new sits beside it (``pybabel compile`` makes one;
the ``.mo`` files are not committed). So a fresh checkout, an installed wheel
and a test run all read the catalog as committed, and a stale ``.mo`` is never
used. English, the source language, has no catalog.

``tests/unit/test_i18n.py`` fails when a string of these pages has no
translation in a language, or when a ``.po`` lags behind the strings.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
from babel.dates import format_date as _babel_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from research_kit.core.errors import BadInput

SOURCE = "en"  # the language strings are written in
# Each language, named in itself (what a language switch shows).
LANGUAGES: dict[str, str] = {"en": "English", "fr": "Français", "de": "Deutsch"}
# The locale dates and numbers are written in, per language: the registry's country (Luxembourg); British English.
LOCALES: dict[str, str] = {"en": "en_GB", "fr": "fr_LU", "de": "de_LU"}
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"


def N_(message: str) -> str:  # gettext's name for "mark for extraction, translate later"
    """Mark ``message`` for extraction; a template translates it where it is shown (``_(label)``)."""
    return message


def check_language(lang: str, what: str = "--lang") -> str:
    """``lang`` if it is a language the pages are written in; otherwise a one-line :class:`BadInput`."""
    if lang not in LANGUAGES:
        raise BadInput(f"{what} {lang!r}: one of {', '.join(LANGUAGES)}")
    return lang


def catalog_path(lang: str) -> Path:
    """The ``.po`` file of ``lang`` (none for the source language)."""
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The translations of ``lang``, loaded once per process (English: none, the strings are English)."""
    check_language(lang)
    if lang == SOURCE:
        return NullTranslations()
    po = catalog_path(lang)
    mo = po.with_suffix(".mo")
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fh:
            return Translations(fh, domain=DOMAIN)
    return Translations(io.BytesIO(compile_po(po, lang)), domain=DOMAIN)


def compile_po(po: Path, lang: str) -> bytes:
    """The ``.mo`` bytes of a ``.po`` file (fuzzy entries left out, as gettext's msgfmt does)."""
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def format_day(day: date | str | None, lang: str, form: str = "long") -> str:
    """A date as ``lang`` writes it ("3 March 2027", "3 mars 2027", "3. März 2027"); '' for None."""
    if day is None or day == "":
        return ""
    value = date.fromisoformat(day[:10]) if isinstance(day, str) else day
    return str(_babel_date(value, format=form, locale=LOCALES[lang]))


def format_quarter(quarter: str, lang: str) -> str:
    """A quarter written ``2026-Q2`` as ``lang`` writes it ("Q2 2026", "T2 2026")."""
    year, _, number = quarter.partition("-Q")
    first = date(int(year), 3 * int(number) - 2, 1)
    return str(_babel_date(first, format="QQQ y", locale=LOCALES[lang]))


def format_number(value: float | int | str, lang: str, digits: int = 3) -> str:
    """A number as ``lang`` writes it: a whole number exactly ("1,234" / "1.234"), any other to ``digits``
    significant digits ("0.813" / "0,813")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(format_decimal(value, locale=LOCALES[lang]))
    rounded = float(f"{float(value):.{digits}g}")
    return str(format_decimal(rounded, format="#,##0.############", locale=LOCALES[lang]))


def environment(loader: jinja2.BaseLoader, lang: str, **globals_: Any) -> jinja2.Environment:
    """A Jinja2 environment in ``lang``: every value escaped (autoescape), an unknown name an error, ``_()`` and
    ``{% trans %}`` translated (new-style: ``_("%(n)s files", n=3)``), whitespace in ``{% trans %}`` trimmed, and
    the filters ``day``, ``quarter`` and ``number`` in the language's forms."""
    check_language(lang)
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    day: Callable[..., str] = lambda value, form="long": format_day(value, lang, form)  # noqa: E731
    number: Callable[..., str] = lambda value, digits=3: format_number(value, lang, digits)  # noqa: E731
    env.filters["day"] = day
    env.filters["number"] = number
    env.filters["quarter"] = lambda value: format_quarter(value, lang)
    env.globals.update(lang=lang, languages=LANGUAGES, **globals_)
    return env


def gettext_of(lang: str) -> Callable[[str], str]:
    """``lang``'s gettext, for a string shown outside a template."""
    found: gettext.NullTranslations = translations(lang)
    return found.gettext
