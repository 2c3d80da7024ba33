"""The admin's computed trait builder as forms: the definition's fields, its filters and a
score's rules as rows of plain inputs (`where-0-property`, `rules-1-where-0-op`, …), read
into the definition JSON that the API takes and checked by the same `definition_parse`;
its `QueryError` lands on the field, row or rule it names.

A filter's value is typed as text and read for its operator (`filter_value`): numbers and
true/false are read as such where the operator compares them, a list is comma-separated,
and quotes keep a value text (`"42"`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast

from django import forms

from profiles.computed.definitions import MAX_RULES, WITH_PROPERTY, TraitDefinition, definition_parse, key_check
from profiles.computed.services import computed_key_check
from profiles.models import ComputedTrait
from profiles.query.filters import OPERATORS, QueryError

TYPE_CHOICES = [
    ("counter", "Counter: how many events"),
    ("sum", "Sum of a property"),
    ("avg", "Average of a property"),
    ("min", "Minimum of a property"),
    ("max", "Maximum of a property"),
    ("most_frequent", "Most frequent value of a property"),
    ("first", "First value of a property"),
    ("last", "Last value of a property"),
    ("unique_list", "Unique values of a property (a list)"),
    ("unique_count", "Number of unique values of a property"),
    ("score", "Score: points per matching event"),
]
OP_CHOICES = [
    ("=", "= equals"), ("!=", "≠ does not equal"), ("<", "< less than"), ("<=", "≤ at most"),
    (">", "> greater than"), (">=", "≥ at least"), ("one_of", "is one of"), ("none_of", "is none of"),
    ("contains", "contains"), ("not_contains", "does not contain"), ("starts_with", "starts with"),
    ("ends_with", "ends with"), ("exists", "exists"), ("not_exists", "does not exist"),
    ("before_date", "is before the date"), ("after_date", "is after the date"),
    ("within_last_days", "is within the last N days"), ("before_last_days", "is before the last N days"),
]  # fmt: skip
assert [op for op, _ in OP_CHOICES] == list(OPERATORS)
# Filters per list (a definition's, or a rule's): more is a definition no one can read.
MAX_FILTERS = 50
# The key `definition_parse` is given while the real one is checked on its own, so that a
# bad key and a bad definition are both reported in one round.
_ANY_KEY = "preview"

# --- A filter's value, as typed ------------------------------------------------------------

_NUMBER = re.compile(r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?$")
_ITEM = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(,|$)')
_COMPARES = ("=", "!=", "<", "<=", ">", ">=")
_TEXT = ("contains", "not_contains", "starts_with", "ends_with", "before_date", "after_date")


def _number(text: str) -> int | float | None:
    if not _NUMBER.match(text):
        return None
    if re.fullmatch(r"[-+]?[0-9]+", text) and abs(int(text)) < 2**53:
        return int(text)
    return float(text)


def _scalar(text: str, *, flags: bool) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text
    if flags and text.lower() in ("true", "false"):
        return text.lower() == "true"
    number = _number(text)
    return text if number is None else number


def _items(text: str) -> list[str]:
    items, at = [], 0
    while at < len(text):
        m = _ITEM.match(text, at)
        if m is None or m.end() == at:  # pragma: no cover - the pattern always advances or ends
            break
        if item := m.group(1).strip():
            items.append(item)
        at = m.end()
    return items


def filter_value(op: str, text: str) -> Any:
    """Pure. The value of a filter row from the text typed for `op` (None: no value)."""
    text = text.strip()
    if op in ("exists", "not_exists") or not text:
        return None
    if op in ("one_of", "none_of"):
        return [_scalar(item, flags=True) for item in _items(text)]
    if op in _COMPARES:
        return _scalar(text, flags=op in ("=", "!="))
    if op in ("within_last_days", "before_last_days"):
        number = _number(text)
        return text if number is None else number
    return text


def _scalar_text(v: Any, *, in_list: bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    text = str(v)
    plain = (
        _scalar(text, flags=True) == text
        and text == text.strip()
        and text
        and not text.startswith('"')
        and not (in_list and "," in text)
    )
    return text if plain else json.dumps(text, ensure_ascii=False)


def filter_value_text(op: str, value: Any) -> str:
    """Pure. The text that `filter_value(op, text)` reads back as `value`."""
    if value is None or op in ("exists", "not_exists"):
        return ""
    if op in _TEXT:
        return str(value)
    if isinstance(value, list | tuple):
        return ", ".join(_scalar_text(v, in_list=True) for v in value)
    return _scalar_text(value, in_list=False)


# --- Rows ---------------------------------------------------------------------------------


def _indices(data: Mapping[str, Any], prefix: str, fields: str) -> list[int]:
    """The row numbers posted under `prefix` (`where` → `where-0-op`, `where-3-value`, …)."""
    pattern = re.compile(rf"^{re.escape(prefix)}-([0-9]{{1,4}})-({fields})$")
    return sorted({int(m.group(1)) for name in data if (m := pattern.match(name))})


class FilterRowForm(forms.Form):
    property = forms.CharField(required=False, max_length=300)
    op = forms.ChoiceField(choices=OP_CHOICES, required=False, initial="=", label="Operator")
    value = forms.CharField(required=False, max_length=2000)

    def blank(self) -> bool:
        return not (self.data.get(self.add_prefix("property"), "").strip() or
                    self.data.get(self.add_prefix("value"), "").strip())  # fmt: skip

    def filter_json(self) -> dict[str, Any]:
        op = self.cleaned_data.get("op") or "="
        out: dict[str, Any] = {"property": self.cleaned_data.get("property", "").strip(), "op": op}
        value = filter_value(op, self.cleaned_data.get("value", ""))
        if value is not None:
            out["value"] = value
        return out


def next_index(rows: list[Any]) -> int:
    """Pure. The number a new row takes after `rows` (posted rows keep theirs, gaps and all)."""
    return max((int(row.prefix.rsplit("-", 1)[1]) for row in rows), default=-1) + 1


def _rows(data: Mapping[str, Any] | None, prefix: str, filters: list[dict[str, Any]]) -> list[FilterRowForm]:
    """The non-blank filter rows posted (bound), else those of a stored definition."""
    if data is not None:
        bound = [FilterRowForm(data, prefix=f"{prefix}-{i}") for i in _indices(data, prefix, "property|op|value")]
        return [row for row in bound if not row.blank()]
    return [
        FilterRowForm(prefix=f"{prefix}-{i}", initial={"property": f.get("property"), "op": f.get("op"),
                                                        "value": filter_value_text(str(f.get("op")), f.get("value"))})
        for i, f in enumerate(filters)
    ]  # fmt: skip


class RuleForm(forms.Form):
    event = forms.CharField(required=False, max_length=300)
    points = forms.FloatField(required=False)

    def __init__(self, *args: Any, filters: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = _rows(self.data if self.is_bound else None, self.add_prefix("where"), filters or [])
        self.where_errors: list[str] = []

    @property
    def where_prefix(self) -> str:
        return self.add_prefix("where")

    def next_row(self) -> int:
        return next_index(self.rows)

    def blank(self) -> bool:
        return not (self.rows or self.data.get(self.add_prefix("event"), "").strip() or
                    self.data.get(self.add_prefix("points"), "").strip())  # fmt: skip

    def rule_json(self) -> dict[str, Any]:
        return {"event": self.cleaned_data.get("event", "").strip(), "points": self.cleaned_data.get("points"),
                "where": [row.filter_json() for row in self.rows]}  # fmt: skip


def _points_text(points: Any) -> Any:
    return int(points) if isinstance(points, float) and points.is_integer() else points


# --- The definition ---------------------------------------------------------------------------


class DefinitionForm(forms.Form):
    """A definition's fields; `parse()` gives the definition or puts the errors in place."""

    type = forms.ChoiceField(choices=TYPE_CHOICES, initial="counter")
    event = forms.CharField(required=False, max_length=300)
    property = forms.CharField(required=False, max_length=300,
                               help_text="The property read; dotted for a nested one (context.page.path).")  # fmt: skip
    min_frequency = forms.IntegerField(required=False, label="Minimum frequency",
                                       help_text="How often a value must occur to count (2 if empty).")  # fmt: skip
    half_life_days = forms.FloatField(required=False, label="Half-life (days)",
                                      help_text="Points halve every this many days. Empty: no decay.")  # fmt: skip
    window_days = forms.IntegerField(required=False, label="Window (days)",
                                     help_text="Only events of the last this many days. Empty: all time.")  # fmt: skip

    def __init__(self, data: Mapping[str, Any] | None = None, *, trait: ComputedTrait | None = None) -> None:
        spec = {"type": trait.type, **trait.spec} if trait is not None and trait.pk else {}
        initial = {f: spec.get(f) for f in ("type", "event", "property", "min_frequency", "window_days",
                                            "half_life_days")}  # fmt: skip
        if spec.get("type") != "most_frequent":
            initial["min_frequency"] = None
        super().__init__(data, initial={k: v for k, v in initial.items() if v is not None})
        posted = data if self.is_bound else None
        self.rows = _rows(posted, "where", spec.get("where") or [])
        if posted is not None:
            rules = [RuleForm(posted, prefix=f"rules-{i}") for i in _indices(posted, "rules", "event|points")]
            self.rules = [rule for rule in rules if not rule.blank()]
        else:
            self.rules = [
                RuleForm(prefix=f"rules-{i}", filters=r.get("where") or [],
                         initial={"event": r.get("event"), "points": _points_text(r.get("points"))})
                for i, r in enumerate(spec.get("rules") or [])
            ]  # fmt: skip
        self.where_errors: list[str] = []
        self.rules_errors: list[str] = []
        self.definition: TraitDefinition | None = None

    def shown_rules(self) -> list[RuleForm]:
        """The rules to draw: a new score starts with one empty rule."""
        return self.rules or [RuleForm(prefix="rules-0")]

    def next_row(self) -> int:
        return next_index(self.rows)

    def next_rule(self) -> int:
        return next_index(self.shown_rules())

    def data_json(self, key: str) -> dict[str, Any]:
        """The definition JSON, as the API takes it: only the fields of the chosen type (a
        field hidden by the type is not sent, whatever it holds)."""
        c = self.cleaned_data
        kind = c.get("type")
        out: dict[str, Any] = {"key": key, "type": kind, "window_days": c.get("window_days")}
        if kind == "score":
            return out | {"rules": [r.rule_json() for r in self.rules], "half_life_days": c.get("half_life_days")}
        out |= {"event": (c.get("event") or "").strip() or None, "where": [row.filter_json() for row in self.rows]}
        if kind in WITH_PROPERTY:
            out["property"] = (c.get("property") or "").strip() or None
        if kind == "most_frequent":
            out["min_frequency"] = c.get("min_frequency")
        return out

    def parse(self) -> TraitDefinition | None:
        """Validate: the definition, or None with the errors on their fields and rows."""
        valid = self.is_valid()
        lists = [self.rows, *(r.rows for r in self.rules)]
        valid = all([r.is_valid() for r in self.rules]) and valid
        valid = all([row.is_valid() for rows in lists for row in rows]) and valid
        if any(len(rows) > MAX_FILTERS for rows in lists):
            self.where_errors.append(f"At most {MAX_FILTERS} filters.")
            return None
        if len(self.rules) > MAX_RULES:
            self.rules_errors.append(f"At most {MAX_RULES} rules.")
            return None
        if not valid:
            return None
        try:
            self.definition = definition_parse(self.data_json(_ANY_KEY))
        except QueryError as exc:
            self.place(exc)
            return None
        return self.definition

    def place(self, exc: QueryError) -> None:
        """Put a `QueryError` where its path points: `event`, `where[1].value`,
        `rules[0].where[2].op`, `rules[1].points`, …"""
        path, target, rows = exc.path, cast(forms.Form, self), self.rows
        errors = self.where_errors
        if m := re.match(r"rules\[([0-9]+)\]\.?", path):
            rule = self.rules[int(m.group(1))]
            path, target, rows, errors = path[m.end() :], rule, rule.rows, rule.where_errors
        elif path == "rules":
            self.rules_errors.append(exc.message)
            return
        if m := re.match(r"where\[([0-9]+)\]\.?", path):
            row, field = rows[int(m.group(1))], path[m.end() :]
            row.add_error(field if field in row.fields else None, exc.message)
        elif path == "where":
            errors.append(exc.message)
        else:
            target.add_error(path if path in target.fields else None, exc.message)

    def messages(self) -> list[str]:
        """Every error, each saying where it is ("Rule 2, filter 1, value: …")."""
        out = [f"{_label(self, n)}{e}" for n, errs in self.errors.items() for e in errs]
        out += [f"Filters: {e}" for e in self.where_errors] + [f"Rules: {e}" for e in self.rules_errors]
        out += [m for i, row in enumerate(self.rows) for m in _located(row, f"Filter {i + 1}")]
        for i, rule in enumerate(self.rules):
            out += _located(rule, f"Rule {i + 1}") + [f"Rule {i + 1}, filters: {e}" for e in rule.where_errors]
            out += [m for j, row in enumerate(rule.rows) for m in _located(row, f"Rule {i + 1}, filter {j + 1}")]
        return out


def _label(form: forms.Form, name: str, *, lower: bool = False) -> str:
    if name == "__all__":
        return ""
    label = str(form.fields[name].label or name.replace("_", " ").capitalize())
    return f"{label.lower() if lower else label}: "


def _located(form: forms.Form, where: str) -> list[str]:
    return [f"{where}, {_label(form, n, lower=True)}{e}" for n, errs in form.errors.items() for e in errs]


class ComputedTraitForm(forms.ModelForm):
    """The model's own fields (key, name, …) and the definition (`self.definition_form`),
    read from the same POST. Valid when both are; `service_data()` is then what
    `computed_trait_create` / `computed_trait_update` take."""

    class Meta:
        model = ComputedTrait
        fields = ["key", "name", "description", "schedule_hours", "enabled"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 60})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definition_form = DefinitionForm(self.data if self.is_bound else None, trait=self.instance)
        if "key" in self.fields:
            self.fields["key"].help_text = "snake_case, e.g. orders_90d. It never changes once saved."
        if "schedule_hours" in self.fields:
            self.fields["schedule_hours"].help_text = "Hours between recomputes of values that change with time alone."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "key" in self.fields and cleaned.get("key"):
            try:
                computed_key_check(key=key_check(cleaned["key"]))
            except QueryError as exc:
                self.add_error("key", exc.message)
        if self.definition_form.parse() is None:
            raise forms.ValidationError("The definition needs fixing: see the fields marked below.")
        return cleaned

    def validate_unique(self) -> None:
        """The key's uniqueness is `computed_key_check`'s (with the custom traits' check)."""

    def service_data(self) -> dict[str, Any]:
        c = self.cleaned_data
        data = self.definition_form.data_json(c.get("key") or self.instance.key)
        return data | {f: c[f] for f in ("name", "description", "schedule_hours", "enabled") if f in c}
