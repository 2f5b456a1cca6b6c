"""The risk engine: runs every rule fail-closed and says whether an order may go, and why not.

Fail-closed means: a rule that raises, or answers something other than None or a reason, blocks
the order with "Risk check '<name>' could not be evaluated; the order was blocked." and the error
is logged. Orders that reduce a position (every purpose except ENTRY) skip the rules that gate
new exposure, so protective and closing exits pass while HALTED or REDUCING and over any limit;
they still have to really reduce a position (``exit_reduces_position``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

from utils.enums import OrderPurpose
from utils.exceptions import RiskLimitExceededError
from utils.observability import get_logger
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot, order_notional
from utils.risk.rules import DEFAULT_RULES, Rule, require_count, require_money, symbol_exposure

log = get_logger(__name__)
SKIPPED_FOR_EXITS = "Not applied: this order reduces a position."


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict. ``applied`` is False for exposure rules an exit skips."""

    name: str
    passed: bool
    message: str = ""
    applied: bool = True
    errored: bool = False
    limit: str = ""  # the limit in words, for display


@dataclass(frozen=True)
class ProjectedExposure:
    """What the account would hold if this entry filled (None where it cannot be known).

    ``order_notional`` is quantity times the reference price (see inputs.reference_price). The
    "after" figures are given for entries only: what an exit removes depends on its fill.
    """

    order_notional: Decimal | None = None
    symbol_exposure_after: Decimal | None = None
    total_exposure_after: Decimal | None = None
    open_positions_after: int | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        """JSON-ready: money as strings."""
        return {
            "order_notional": _text(self.order_notional),
            "symbol_exposure_after": _text(self.symbol_exposure_after),
            "total_exposure_after": _text(self.total_exposure_after),
            "open_positions_after": self.open_positions_after,
        }


@dataclass(frozen=True)
class RiskDecision:
    """The engine's answer: allowed or not, each rule's verdict, and the projected exposure.

    ``enter_reducing`` is True when a failed rule (the daily loss limit) says the user should now
    be moved to REDUCING; the service does that, the engine only reports it.
    """

    allowed: bool
    results: tuple[RuleResult, ...]
    projected: ProjectedExposure = field(default_factory=ProjectedExposure)
    enter_reducing: bool = False
    error_class: type[RiskLimitExceededError] = RiskLimitExceededError

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        """The results of the rules that blocked the order."""
        return tuple(result for result in self.results if not result.passed)

    @property
    def reasons(self) -> list[str]:
        """Why the order was blocked, in a trader's words (empty when allowed)."""
        return [result.message for result in self.failures]

    @property
    def failed_rules(self) -> list[str]:
        """The names of the rules that blocked the order."""
        return [result.name for result in self.failures]

    def raise_if_rejected(self) -> None:
        """Raise the most specific RiskLimitExceededError subclass when the order is not allowed."""
        if not self.allowed:
            details = {"reasons": self.reasons, "rules": self.failed_rules}
            raise self.error_class(" ".join(self.reasons), details=details)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the order ticket, the API and the audit trail."""
        return {
            "allowed": self.allowed,
            "reasons": self.reasons,
            "rules": [asdict(result) for result in self.results],
            "projected": self.projected.as_dict(),
            "enter_reducing": self.enter_reducing,
        }


class RiskEngine:
    """Runs a list of rules (DEFAULT_RULES unless given) over an order intent."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES):
        self.rules = tuple(rules)

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> RiskDecision:
        """Evaluate every rule (all of them, so every reason is reported) and decide."""
        verdicts = [(rule, self._run(rule, intent, snapshot, limits)) for rule in self.rules]
        failed = [(rule, result) for rule, result in verdicts if not result.passed]
        return RiskDecision(
            allowed=not failed,
            results=tuple(result for _, result in verdicts),
            projected=self._project(intent, snapshot),
            enter_reducing=any(rule.enters_reducing and not result.errored for rule, result in failed),
            error_class=_error_for(failed),
        )

    def _run(self, rule: Rule, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> RuleResult:
        return replace(self._verdict(rule, intent, snapshot, limits), limit=_described(rule, limits))

    def _verdict(self, rule: Rule, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> RuleResult:
        name = _rule_name(rule)
        if rule.gates_new_exposure and reduces_exposure(intent):
            return RuleResult(name, passed=True, message=SKIPPED_FOR_EXITS, applied=False)
        try:
            reason = rule.check(intent, snapshot, limits)
            if reason is not None and not (isinstance(reason, str) and reason):
                raise TypeError(f"rule answered {reason!r}, not None or a reason")
        except Exception:  # fail closed: whatever went wrong, the order is blocked.
            log.exception("risk.rule_failed", rule=name, symbol=_safe_symbol(intent), purpose=str(intent.purpose))
            return RuleResult(name, passed=False, message=evaluation_failed(name), errored=True)
        return RuleResult(name, passed=reason is None, message=reason or "")

    def _project(self, intent: OrderIntent, snapshot: RiskSnapshot) -> ProjectedExposure:
        """Best-effort projection for display: it never decides, so an error only blanks it."""
        try:
            notional = order_notional(intent, snapshot.quote)
            if notional is None or reduces_exposure(intent):
                return ProjectedExposure(order_notional=notional)
            return ProjectedExposure(
                order_notional=notional,
                symbol_exposure_after=symbol_exposure(snapshot, intent.symbol) + notional,
                total_exposure_after=require_money(snapshot.total_exposure, "total_exposure") + notional,
                open_positions_after=require_count(snapshot.open_positions, "open_positions") + 1,
            )
        except Exception:  # the rules already failed closed on the same inputs.
            log.warning("risk.projection_failed", symbol=_safe_symbol(intent), exc_info=True)
            return ProjectedExposure()


def _described(rule: Rule, limits: RiskLimits) -> str:
    """The rule's limit in words; a description that fails is left blank (it decides nothing)."""
    try:
        return str(rule.describe(limits))
    except Exception:
        log.warning("risk.describe_failed", rule=_rule_name(rule), exc_info=True)
        return ""


def evaluation_failed(rule_name: str) -> str:
    """The reason given when a rule could not be evaluated."""
    return f"Risk check '{rule_name}' could not be evaluated; the order was blocked."


def reduces_exposure(intent: OrderIntent) -> bool:
    """True only for a known exit purpose; anything unrecognisable is treated as an entry."""
    try:
        return OrderPurpose(intent.purpose) != OrderPurpose.ENTRY
    except (ValueError, TypeError):
        return False


def _error_for(failed: list[tuple[Rule, RuleResult]]) -> type[RiskLimitExceededError]:
    """The failed rules' own error when they agree on one, else the general risk error.

    A rule that could not be evaluated contributes the general error: its own would name a
    limit that was never checked.
    """
    errors = {RiskLimitExceededError if result.errored else _rule_error(rule) for rule, result in failed}
    return errors.pop() if len(errors) == 1 else RiskLimitExceededError


def _rule_error(rule: Rule) -> type[RiskLimitExceededError]:
    error = getattr(rule, "error", RiskLimitExceededError)
    return error if isinstance(error, type) and issubclass(error, RiskLimitExceededError) else RiskLimitExceededError


def _rule_name(rule: Rule) -> str:
    name = getattr(rule, "name", None)
    return name if isinstance(name, str) and name else type(rule).__name__


def _safe_symbol(intent: OrderIntent) -> str:
    return str(getattr(intent, "symbol", "?"))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
