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

A registry may supply more languages (Luxembourgish, ``lb``) through the policy:
``[transparency].extra_catalogs`` names a folder holding ``LANG/LC_MESSAGES/messages.po``.
:func:`offered` reads it into a :class:`Languages`: the built-in languages, then
each supplied one whose catalog is complete for the current ``messages.pot``
(:func:`first_gap`, the check the tests apply to the built-in catalogs), named
in itself and written in its locale from Babel's data.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date as _babel_date
from babel.messages.catalog import Catalog, Message
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
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"  # the strings every catalog translates
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
COUNTRY = "LU"  # a supplied language's dates and numbers: its locale in the registry's country, where Babel has one
_CODE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
# What Jinja's gettext formats in every message: a named placeholder or a literal % written %%; any other % fails.
_FORMAT = re.compile(r"%(?:%|\((\w+)\)s)")
# Markup a supplied translation could add to a page (Jinja's gettext marks translations safe): a tag, or a lone < or >.
_MARKUP = re.compile(r"<[^<>]*>|[<>]")
_PLURAL_PROBES = (*range(1001), 10_000, 100_000, 1_000_000, 10_000_000)


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
    return str(_babel_date(value, format=form, locale=locale_of(lang)))


def format_quarter(quarter: str, lang: str) -> str:
    """A quarter written ``2026-Q2`` as ``lang`` writes it ("Q2 2026", "T2 2026")."""
    year, _, number = quarter.partition("-Q")
    first = date(int(year), 3 * int(number) - 2, 1)
    return str(_babel_date(first, format="QQQ y", locale=locale_of(lang)))


def format_number(value: float | int | str, lang: str, digits: int = 3) -> str:
    """A number as ``lang`` writes it: a whole number exactly ("1,234" / "1.234"), any other to ``digits``
    significant digits ("0.813" / "0,813")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(format_decimal(value, locale=locale_of(lang)))
    rounded = float(f"{float(value):.{digits}g}")
    return str(format_decimal(rounded, format="#,##0.############", locale=locale_of(lang)))


def locale_of(lang: str) -> str:
    """The locale ``lang``'s dates and numbers are written in: a built-in language's (:data:`LOCALES`), else the
    language in Luxembourg where Babel has that locale (``lb`` → ``lb_LU``), else the language's own."""
    if lang in LOCALES:
        return LOCALES[lang]
    return _supplied_locale(lang)


@functools.cache
def _supplied_locale(lang: str) -> str:
    try:
        Locale.parse(f"{lang}_{COUNTRY}")
    except (UnknownLocaleError, ValueError):
        return lang
    return f"{lang}_{COUNTRY}"


def environment(loader: jinja2.BaseLoader, lang: str, **globals_: Any) -> jinja2.Environment:
    """A Jinja2 environment in ``lang`` (a built-in language; :meth:`Languages.environment` for a supplied one):
    every value escaped (autoescape), an unknown name an error, ``_()`` and ``{% trans %}`` translated (new-style:
    ``_("%(n)s files", n=3)``), whitespace in ``{% trans %}`` trimmed, and the filters ``day``, ``quarter`` and
    ``number`` in the language's forms."""
    return BUILT_IN.environment(loader, lang, **globals_)


def _environment(
    loader: jinja2.BaseLoader, lang: str, found: NullTranslations, names: dict[str, str], **globals_: Any
) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(found, newstyle=True)  # type: ignore[attr-defined]
    day: Callable[..., str] = lambda value, form="long": format_day(value, lang, form)  # noqa: E731
    number: Callable[..., str] = lambda value, digits=3: format_number(value, lang, digits)  # noqa: E731
    env.filters["day"] = day
    env.filters["number"] = number
    env.filters["quarter"] = lambda value: format_quarter(value, lang)
    env.globals.update(lang=lang, languages=names, **globals_)
    return env


def gettext_of(lang: str) -> Callable[[str], str]:
    """``lang``'s gettext (a built-in language), for a string shown outside a template."""
    return BUILT_IN.gettext(lang)


# -- languages a registry supplies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Languages:
    """The languages offered: the built-in ones (:data:`LANGUAGES`), then those whose complete catalogs the policy
    supplies (``catalogs``: their ``.po`` files), each by its code and its name in itself."""

    names: dict[str, str] = field(default_factory=lambda: dict(LANGUAGES))
    catalogs: dict[str, Path] = field(default_factory=dict)

    def check(self, lang: str, what: str = "--lang") -> str:
        """``lang`` if it is offered; otherwise a one-line :class:`BadInput`."""
        if lang not in self.names:
            raise BadInput(f"{what} {lang!r}: one of {', '.join(self.names)}")
        return lang

    def translations(self, lang: str) -> NullTranslations:
        self.check(lang)
        po = self.catalogs.get(lang)
        if po is None:
            return translations(lang)
        return _supplied_translations(po, lang, po.stat().st_mtime_ns)

    def gettext(self, lang: str) -> Callable[[str], str]:
        found: gettext.NullTranslations = self.translations(lang)
        return found.gettext

    def environment(self, loader: jinja2.BaseLoader, lang: str, **globals_: Any) -> jinja2.Environment:
        """:func:`environment`, in any language offered; ``languages`` (a template's switch) names them all."""
        return _environment(loader, lang, self.translations(lang), self.names, **globals_)


BUILT_IN = Languages()


@functools.lru_cache(maxsize=32)
def _supplied_translations(po: Path, lang: str, mtime_ns: int) -> Translations:
    return Translations(io.BytesIO(compile_po(po, lang)), domain=DOMAIN)


def _msgid(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def first_gap(catalog: Catalog, template: Iterable[Message]) -> str | None:
    """The first of ``template``'s messages (in its order) that ``catalog`` does not translate, as one phrase
    naming its msgid: missing, fuzzy, empty, lacking a plural form, or with other ``%(name)s`` placeholders than
    its English. None when every one is translated."""
    entries = {_msgid(m): m for m in catalog if m.id}
    for english in template:
        if not english.id:
            continue
        msgid = _msgid(english)
        message = entries.get(msgid)
        if message is None:
            return f"{msgid!r} is missing"
        if "fuzzy" in message.flags:
            return f"{msgid!r} is fuzzy: check its translation"
        source = [message.id] if isinstance(message.id, str) else list(message.id)
        forms = [message.string] if isinstance(message.string, str) else list(message.string or ())
        if not all(isinstance(f, str) and f.strip() for f in forms) or not forms:
            return f"{msgid!r} has no translation"
        if not isinstance(message.id, str) and len(forms) != catalog.num_plurals:
            return f"{msgid!r} needs {catalog.num_plurals} forms"
        wanted = {name for text in source for name in _placeholders(text)}
        for form in forms:
            if _placeholders(form) != wanted:
                return f"{msgid!r}: placeholders differ in {form!r}"
            if "%" in _FORMAT.sub("", form) or not _formats(form, wanted):
                return f"{msgid!r}: a lone % in {form!r} (write a literal % as %%)"
    return None


def _placeholders(text: str) -> set[str]:
    return {name for name in _FORMAT.findall(text) if name}


def _formats(form: str, names: Iterable[str]) -> bool:
    """Whether ``form`` survives the formatting Jinja's gettext applies to every message."""
    try:
        form % dict.fromkeys(names, 1)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def first_markup(catalog: Catalog, template: Iterable[Message]) -> str | None:
    """The first of ``template``'s messages whose translation in ``catalog`` holds markup (a tag, or a lone ``<``
    or ``>``) its English does not, as one phrase naming its msgid; None when there is none. Jinja's gettext marks
    a translation safe, so a page would show such markup unescaped."""
    entries = {_msgid(m): m for m in catalog if m.id}
    for english in template:
        message = entries.get(_msgid(english)) if english.id else None
        if message is None:
            continue
        source = [message.id] if isinstance(message.id, str) else list(message.id)
        forms = [message.string] if isinstance(message.string, str) else list(message.string or ())
        allowed: Counter[str] = Counter()
        for text in source:
            allowed |= Counter(_MARKUP.findall(text))
        for form in forms:
            if isinstance(form, str) and Counter(_MARKUP.findall(form)) - allowed:
                return f"{_msgid(english)!r}: markup its English does not have in {form!r} (< and > are refused)"
    return None


def _plural_problem(found: gettext.GNUTranslations, forms: int) -> str | None:
    """Why the compiled plural rule of ``found`` cannot choose among ``forms`` forms; None if it can."""
    for n in _PLURAL_PROBES:
        try:
            index = found.plural(n)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a rule that fails for some n fails a page showing that n
            return f"the Plural-Forms rule fails for n={n} ({type(exc).__name__}: {exc})"
        if not isinstance(index, int) or not 0 <= index < forms:
            return f"the Plural-Forms rule gives form {index!r} for n={n}, not one of its {forms}"
    return None


def read_catalog(path: Path, lang: str | None = None) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=lang, domain=DOMAIN)


@functools.lru_cache(maxsize=4)
def _template(mtime_ns: int) -> tuple[Message, ...]:
    return tuple(m for m in read_catalog(TEMPLATE) if m.id)


def catalog_problem(po: Path, lang: str) -> str | None:
    """Why the supplied catalog ``po`` of ``lang`` cannot be offered, in one line naming the file; None if it
    can: ``lang`` a language Babel knows and not a built-in one, the file readable, every message of the
    current ``messages.pot`` translated (:func:`first_gap`: a lone ``%`` too, which Jinja cannot format), its
    ``Plural-Forms`` rule one gettext compiles and that picks one of its forms for every count, and no markup in
    a translation that its English lacks (:func:`first_markup`: a page shows a translation unescaped)."""
    try:
        mtime = po.stat().st_mtime_ns
    except OSError:
        return f"{po}: no such file (a supplied language's catalog is LANG/LC_MESSAGES/{DOMAIN}.po)"
    return _catalog_problem(po, lang, mtime, TEMPLATE.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _catalog_problem(po: Path, lang: str, mtime_ns: int, template_ns: int) -> str | None:
    if lang in LANGUAGES:
        return f"{po}: {lang!r} is built in; its catalog is the package's, not the policy's"
    try:
        if not _CODE.fullmatch(lang):
            raise ValueError(lang)
        Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        return f"{po}: {lang!r} is not a language code Babel knows (such as 'lb')"
    try:
        catalog = read_catalog(po, lang)
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is one line naming it
        return f"{po}: unreadable ({type(exc).__name__}: {exc})"
    try:  # as a page loads it: gettext compiles the Plural-Forms rule
        found = Translations(io.BytesIO(compile_po(po, lang)), domain=DOMAIN)
    except Exception as exc:  # noqa: BLE001 - a catalog gettext cannot load is one line naming it
        return f"{po}: unusable ({type(exc).__name__}: {exc})".replace("\n", " ")
    template = _template(template_ns)
    gap = first_gap(catalog, template)
    if gap:
        return f"{po}: incomplete for the current {DOMAIN}.pot: {gap}"
    unusable = _plural_problem(found, catalog.num_plurals) or first_markup(catalog, template)
    return f"{po}: unusable: {unusable}" if unusable else None


def offered(root: Path, setting: str, *, strict: bool | Collection[str] = True) -> Languages:
    """The languages offered under the policy's ``[transparency].extra_catalogs`` (``setting``: a folder, relative
    to the workspace ``root`` or absolute; '' for none): the built-in ones, then each supplied ``LANG`` whose
    catalog is complete, in the order of their codes. A supplied catalog that cannot be offered
    (:func:`catalog_problem`) is refused in one :class:`BadInput` line when ``strict`` is true or names its code,
    and otherwise left out."""
    if not setting:
        return BUILT_IN
    folder = root / Path(setting).expanduser()

    def refuse(code: str) -> bool:
        return strict if isinstance(strict, bool) else code in strict

    if not folder.is_dir():
        if strict is True:
            raise BadInput(f"[transparency].extra_catalogs: {folder}: no such folder")
        return BUILT_IN
    names, catalogs = dict(LANGUAGES), {}
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        po = child / "LC_MESSAGES" / f"{DOMAIN}.po"
        problem = catalog_problem(po, child.name)
        if problem is not None:
            if refuse(child.name):
                raise BadInput(problem)
            continue
        names[child.name] = str(Locale.parse(child.name).get_display_name(child.name) or child.name)
        catalogs[child.name] = po
    return Languages(names, catalogs) if catalogs else BUILT_IN
