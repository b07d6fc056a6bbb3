"""Node selections, as operators write them in xCAT's and confluent's
noderange (pure: no Redis, no click).

    selection := item ("," item)*          union, left to right
    item      := ["-"] term ("@" term)*    a leading "-" takes the item away
                                           from what came before; "@" intersects
    term      := "all"
               | key "=" value | key "!=" value | key "=~" regex    labels
               | name with ranges: rack1-[01-40], n[1,3,5-9]       zero padding kept

A name (after its ranges are expanded) that matches no node is an error that
names it: xCAT silently drops unknown names, which turns a typo into a
partial action. A selection that selects nothing is an error too.

Selections come from API clients too, so each is bounded before the work it
would cause: its length (MAX_LENGTH), the names its ranges expand to, all
terms together (MAX_EXPANDED, counted before any is made), and a regex's
length (MAX_REGEX). Regexes are RE2's, matched in time linear in the label
(Python's `re` backtracks: `(a+)+$` took 2 s on 27 characters, doubling
with each more).
"""

import re

import re2

from farm.errors import FarmError

MAX_LENGTH = 4096        # characters in a selection
MAX_EXPANDED = 200_000   # names one selection's ranges may expand to, all terms together
MAX_REGEX = 256          # characters in a `key=~regex` term's regex
_RE2 = re2.Options()
_RE2.log_errors = False  # a bad regex is the caller's error, not a line on stderr
_RANGE = re.compile(r"\[([^\]]*)\]")
_PART = re.compile(r"^(\d+)(?:-(\d+))?\Z")
_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]{0,62})(=~|!=|=)(.*)\Z", re.S)


class SelectionError(FarmError):
    """A selection that cannot be read, or that names nodes that do not exist."""


def parse(text):
    """[(exclude, [term, ...])] for `text`; raises SelectionError."""
    if not isinstance(text, str) or not text.strip():
        raise SelectionError("an empty selection")
    if len(text) > MAX_LENGTH:
        raise SelectionError(f"a selection of {len(text):,} characters; at most {MAX_LENGTH:,}")
    raw_items = []
    for raw in _split(text.strip(), ","):
        item = raw.strip()
        exclude = item.startswith("-")
        if exclude:
            item = item[1:].strip()
        if not item:
            raise SelectionError(f"an empty item in {text!r}")
        raw_items.append((exclude, [t.strip() for t in _split(item, "@")]))
    # every name term counted before any is expanded: the cap is the whole
    # selection's, and nothing past it is ever built
    total = sum(_count(t) for _, terms in raw_items for t in terms if _is_names(t))
    if total > MAX_EXPANDED:
        raise SelectionError(f"{text[:60]!r}... names {total:,} nodes through its ranges, past "
                             f"what one selection may name ({MAX_EXPANDED:,} in all)")
    items = [(exclude, [_term(t, text) for t in terms]) for exclude, terms in raw_items]
    if items[0][0]:
        items.insert(0, (False, [("all",)]))  # "-n1" alone means all but n1
    return items


def _split(text, sep):
    """Split on `sep` outside brackets (a range may hold commas)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SelectionError(f"an unmatched ']' in {text!r}")
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectionError(f"an unmatched '[' in {text!r}")
    out.append(text[start:])
    return out


def _is_names(term):
    label = _LABEL.match(term)
    return term not in ("", "all") and not (label and "[" not in label.group(1)) \
        and not any(ch in term for ch in "=~!")


def _count(pattern):
    """How many names `pattern` expands to, counted without making them."""
    parts = _RANGE.split(pattern)
    count = 1
    for i in range(1, len(parts), 2):
        size = 0
        for piece in parts[i].split(","):
            m = _PART.match(piece.strip())
            if not m:
                raise SelectionError(f"{pattern!r}: [{parts[i]}] is not a range like [01-40] or "
                                     f"[1,3,5-9]")
            size += max(0, int(m.group(2) or m.group(1)) - int(m.group(1)) + 1)
        count *= size
        if count > MAX_EXPANDED:
            return count  # enough to refuse; the product of more could be huge
    return count


def _term(term, text):
    if not term:
        raise SelectionError(f"an empty term in {text!r}")
    if term == "all":
        return ("all",)
    label = _LABEL.match(term)
    if label and "[" not in label.group(1):
        key, op, value = label.groups()
        if op == "=~":
            if len(value) > MAX_REGEX:
                raise SelectionError(f"{key}=~: a regex of {len(value)} characters; at most "
                                     f"{MAX_REGEX}")
            try:
                return ("match", key, re2.compile(value, options=_RE2))
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
                    else str(exc)
                raise SelectionError(f"{term!r}: not a regular expression RE2 reads "
                                     f"({reason})") from None
        return ("label", key, op, value)
    if any(ch in term for ch in "=~!"):
        raise SelectionError(f"{term!r}: a label term is key=value, key!=value or key=~regex")
    return ("names", tuple(expand(term)))


def expand(pattern):
    """The names a pattern with [a-b,c] ranges stands for, in order (at most
    MAX_EXPANDED, counted before any is made)."""
    count = _count(pattern)
    if count > MAX_EXPANDED:
        raise SelectionError(f"{pattern!r} expands to {count:,} names, past what one selection "
                             f"may name ({MAX_EXPANDED:,} in all)")
    parts = _RANGE.split(pattern)
    choices = [_range(parts[i], pattern) for i in range(1, len(parts), 2)]
    names = [parts[0]]
    for i, options in enumerate(choices):
        names = [n + c + parts[2 * i + 2] for n in names for c in options]
    return names


def _range(spec, pattern):
    out = []
    for piece in spec.split(","):
        m = _PART.match(piece.strip())
        if not m:
            raise SelectionError(f"{pattern!r}: [{spec}] is not a range like [01-40] or [1,3,5-9]")
        first, last = m.group(1), m.group(2) or m.group(1)
        if int(last) < int(first):
            raise SelectionError(f"{pattern!r}: {piece.strip()} runs backwards")
        if int(last) - int(first) >= MAX_EXPANDED or len(out) >= MAX_EXPANDED:
            raise SelectionError(f"{pattern!r}: {piece.strip()} is too long a range")
        # zero padding kept: [01-10] gives 01..10, [1-10] gives 1..10
        width = len(first) if first.startswith("0") else 0
        out += [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    return out


def named(items):
    """Every name the selection's name terms mention, or None when a term
    (all, key!=value) needs every node's name."""
    if any(t[0] == "all" or (t[0] == "label" and t[2] == "!=")
           for _, terms in items for t in terms):
        return None
    return {n for _, terms in items for t in terms if t[0] == "names" for n in t[1]}


def needs_labels(items):
    """Whether resolving `items` reads any node's labels."""
    return any(t[0] in ("label", "match") for _, terms in items for t in terms)


class LabelsOf:
    """The two label look-ups resolve() needs, from a function name ->
    labels (dict), for tests; the Store answers the same two questions
    (members, values) from its label index in Redis."""

    def __init__(self, names, labels_of):
        self._sets = {}
        for name in names:
            for key, value in labels_of(name).items():
                self._sets.setdefault(key, {}).setdefault(value, set()).add(name)

    def members(self, key, value):
        return set(self._sets.get(key, {}).get(value, ()))

    def values(self, key):
        return set(self._sets.get(key, {}))


def resolve(items, names, labels=None):
    """The sorted names `items` select among `names`: every node's name, or,
    when named(items) is not None, those of the named ones that exist.
    `labels` answers members(key, value) (the names with that label) and
    values(key) (the values a key has); needed only when needs_labels(items).
    Raises SelectionError naming unknown names, or when nothing is selected."""
    known = set(names)
    universe = named(items) is None  # `names` is every node's, not just those named
    unknown = [n for _, terms in items for t in terms if t[0] == "names"
               for n in t[1] if n not in known]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10
                                           else "")
        raise SelectionError(f"no node named {shown}")
    chosen = set()
    for exclude, terms in items:
        found = _term_set(terms[0], known, labels, universe)
        for t in terms[1:]:
            found &= _term_set(t, known, labels, universe)
        chosen = chosen - found if exclude else chosen | found
    if not chosen:
        raise SelectionError("the selection selects no node")
    return sorted(chosen)


def _term_set(term, known, labels, universe):
    """The names one term picks. A label's sets come from an index kept with
    the inventory: trusted as they are unless every name is at hand anyway."""
    kind = term[0]
    if kind == "all":
        return set(known)
    if kind == "names":
        return set(term[1])
    if kind == "label":
        _, key, op, value = term
        with_it = labels.members(key, value)
        with_it = with_it & known if universe else with_it
        # !=: every node but those with that value (nodes without the key included)
        return with_it if op == "=" else known - with_it
    _, key, regex = term
    found = set()
    for value in labels.values(key):
        if regex.fullmatch(value):
            found |= labels.members(key, value)
    return found & known if universe else found
