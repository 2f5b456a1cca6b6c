"""The paper broker: an honest sandbox behind the same ``Broker`` interface as the real ones.

Pure engine code behind two protocols: a ``PaperStore`` (the database-backed one lives with the
services; tests use tests/fakes/paper_store.py) and a ``PriceSource`` (``SyntheticPrices`` by
default). Matching is lazy: every call that reads or writes orders, positions or the balance first
runs one matching pass (``process``) at the current quotes, so callers always see current state;
a periodic ``process()`` keeps resting orders honest between calls. Each pass fills at most
``PaperSettings.liquidity_per_tick`` per order, so large orders fill partially over several passes.

Documented simplifications: no short selling; buying power is cash (no margin) and is checked at
entry and again at each fill (an unaffordable fill cancels the order); equity MARKET orders entered
while the market is closed stay WORKING until the open rather than being rejected; exchange
holidays are ignored; a replace creates a new order for the full requested quantity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from utils.brokers.base import (
    Balance,
    Broker,
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Candle,
    CandleInterval,
    Capabilities,
    Fill,
    MarketHours,
    OrderRequest,
    Quote,
    Transaction,
)
from utils.brokers.paper_matching import (
    PaperAccountState,
    PaperOrder,
    PaperPosition,
    PaperSettings,
    close,
    new_order,
    run_pass,
    validate_entry,
)
from utils.brokers.paper_prices import PRICE_TICK, market_hours, sample_candles
from utils.enums import OrderSide, OrderStatus
from utils.exceptions import ArbionError, InvalidOrderError, NotFoundError, OrderCancellationError
from utils.money import utcnow

__all__ = [
    "PaperAccountState",
    "PaperBroker",
    "PaperOrder",
    "PaperPosition",
    "PaperSettings",
    "PaperStore",
    "PriceSource",
    "to_broker_order",
]

T = TypeVar("T")


class PaperStore(Protocol):
    """Persistence of paper accounts; the engine never sees a database."""

    def session(self, account_id: str) -> AbstractContextManager[PaperAccountState]:
        """Load the account with positions and working orders, locked against concurrent sessions;
        persist every change on a clean exit (nothing on an exception). NotFoundError if unknown."""

    def find_order(self, account_id: str, order_id: str) -> PaperOrder | None:
        """One order of the account, in any status."""

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None
    ) -> list[PaperOrder]:
        """Orders created in [since, until], optionally of one status, oldest first."""

    def find_by_client_order_id(self, account_id: str, client_order_id: str) -> PaperOrder | None:
        """The account's order with this client order id, in any status. Called INSIDE an open
        session of the same account: it must see that session's data and not wait on its lock."""

    def list_filled_orders(self, account_id: str, since: datetime, until: datetime) -> list[PaperOrder]:
        """Orders with at least one fill whose time is in [since, until], oldest first."""


class PriceSource(Protocol):
    """Where quotes come from (``paper_prices.SyntheticPrices``, or a test double)."""

    def quotes(self, symbols: list[str], at: datetime) -> dict[str, Quote]:
        """Quotes at ``at``; unknown symbols are absent."""


def to_broker_order(order: PaperOrder) -> BrokerOrder:
    """The interface's view of a paper order."""
    return BrokerOrder(
        broker_order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        status=order.status,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        remaining_quantity=order.remaining_quantity,
        average_fill_price=order.average_fill_price,
        client_order_id=order.client_order_id,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        entered_at=order.created_at,
        closed_at=order.closed_at,
        status_detail=order.status_detail,
        fees=sum((fill.commission for fill in order.fills), Decimal(0)),
        fills=tuple(order.fills),
    )


class PaperBroker(Broker):
    """One paper account traded against a price source, with state kept in a ``PaperStore``."""

    capabilities = Capabilities(
        native_stop=True,
        stop_limit=True,
        trailing_stop=True,
        bracket=False,
        replace=True,
        fractional_quantity=True,  # crypto only; equities trade whole shares
        always_open=False,
        max_symbols_per_quote=500,
        order_writes_per_minute=100000,
        replace_keeps_id=False,  # a replace creates a new order id; the old order becomes REPLACED
    )

    def __init__(
        self,
        account_id: str,
        store: PaperStore,
        prices: PriceSource,
        settings: PaperSettings = PaperSettings(),  # noqa: B008 - frozen, shared safely
        clock: Callable[[], datetime] = utcnow,
    ):
        self.account_id = account_id
        self.store = store
        self.prices = prices
        self.settings = settings
        self.clock = clock

    # ------------------------------------------------------------------------ engine plumbing

    def process(self) -> None:
        """Run the matching pass for the account's working orders at the current prices."""
        self._in_session(self.account_id, lambda state, now, quotes: None)

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the paper broker's clock must return aware datetimes")
        return now.astimezone(UTC)

    def _own(self, account_id: str) -> None:
        if account_id != self.account_id:
            raise NotFoundError(f"Paper account {account_id!r} is not this connection's account.")

    def _in_session(
        self,
        account_id: str,
        action: Callable[[PaperAccountState, datetime, dict[str, Quote]], T],
        symbols: Iterable[str] = (),
        with_positions: bool = False,
    ) -> T:
        """Open a session, run one matching pass, then ``action``. A trading error raised by the
        action is re-raised AFTER the session saved the pass, and the action must raise before it
        changes anything, so a rejected order leaves no trace."""
        self._own(account_id)
        now = self._now()
        failure: ArbionError | None = None
        outcome: list[T] = []
        with self.store.session(self.account_id) as state:
            wanted = {order.symbol for order in state.orders.values() if order.is_working} | set(symbols)
            if with_positions:
                wanted |= set(state.positions)
            quotes = self.prices.quotes(sorted(wanted), now) if wanted else {}
            run_pass(state, quotes, now, self.settings)
            try:
                outcome.append(action(state, now, quotes))
            except ArbionError as exc:
                failure = exc
        if failure is not None:
            raise failure
        return outcome[0]

    # ------------------------------------------------------------------------ account reads

    def accounts(self) -> list[BrokerAccount]:
        """The single paper account of this connection."""
        return [BrokerAccount(self.account_id, "PAPER-" + self.account_id[-4:], "Paper trading account")]

    def balance(self, account_id: str) -> Balance:
        """Cash (also the buying power: no margin) and equity at the current marks."""

        def read(state: PaperAccountState, now: datetime, quotes: dict[str, Quote]) -> Balance:
            holdings = sum(
                (pos.quantity * _mark(symbol, pos, quotes) for symbol, pos in state.positions.items()), Decimal(0)
            )
            return Balance("USD", cash=state.cash, buying_power=state.cash, equity=state.cash + holdings)

        return self._in_session(account_id, read, with_positions=True)

    def positions(self, account_id: str) -> list[BrokerPosition]:
        """Open long positions valued at the current marks."""

        def read(state: PaperAccountState, now: datetime, quotes: dict[str, Quote]) -> list[BrokerPosition]:
            return [
                BrokerPosition(symbol, pos.quantity, pos.average_price, pos.quantity * _mark(symbol, pos, quotes))
                for symbol, pos in sorted(state.positions.items())
                if pos.quantity > 0
            ]

        return self._in_session(account_id, read, with_positions=True)

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Quotes from the price source, in batches of ``max_symbols_per_quote``."""
        now, size = self._now(), self.capabilities.max_symbols_per_quote
        unique = list(dict.fromkeys(symbols))
        result: dict[str, Quote] = {}
        for start in range(0, len(unique), size):
            result.update(self.prices.quotes(unique[start : start + size], now))
        return result

    def market_hours(self, symbol: str, at: datetime) -> MarketHours:
        """US equity regular session (weekdays, holidays ignored); crypto is always open."""
        return market_hours(symbol, at)

    def price_increment(self, symbol: str, price: Decimal) -> Decimal:
        """One cent for every symbol: the paper engine refuses prices off that tick."""
        return PRICE_TICK

    def candles(self, symbol: str, interval: CandleInterval, start: datetime, end: datetime) -> list[Candle]:
        """Bars sampled from the price source (deterministic with ``SyntheticPrices``), none in the future."""
        now = self._now()

        def price_at(moment: datetime) -> Decimal | None:
            quote = self.prices.quotes([symbol], moment).get(symbol) if moment <= now else None
            return quote.mark if quote is not None else None

        return sample_candles(price_at, symbol, interval, start, min(end, now))

    # ------------------------------------------------------------------------ orders

    def place_order(self, account_id: str, request: OrderRequest) -> BrokerOrder:
        """Validate and enter an order, then give it its first matching pass. Idempotent per client id."""
        return self._in_session(
            account_id, lambda state, now, quotes: self._enter(state, now, quotes, request, None), [request.symbol]
        )

    def replace_order(self, account_id: str, broker_order_id: str, request: OrderRequest) -> BrokerOrder:
        """Cancel-replace: the old order becomes REPLACED, a new order (new id) takes its place."""

        def replace(state: PaperAccountState, now: datetime, quotes: dict[str, Quote]) -> BrokerOrder:
            old = self._working_order(state, broker_order_id, "replaced")
            if (request.symbol, request.side) != (old.symbol, old.side):
                raise InvalidOrderError("A replacement must keep the symbol and side of the original order.")
            return self._enter(state, now, quotes, request, old)

        return self._in_session(account_id, replace, [request.symbol])

    def cancel_order(self, account_id: str, broker_order_id: str) -> None:
        """Cancel a working order; OrderCancellationError when it is already terminal."""

        def cancel(state: PaperAccountState, now: datetime, quotes: dict[str, Quote]) -> None:
            close(self._working_order(state, broker_order_id, "cancelled"), OrderStatus.CANCELLED, now, "Cancelled")

        self._in_session(account_id, cancel)

    def get_order(self, account_id: str, broker_order_id: str) -> BrokerOrder:
        """The current state of one order, fills included."""

        def read(state: PaperAccountState, now: datetime, quotes: dict[str, Quote]) -> BrokerOrder:
            return to_broker_order(self._find(state, broker_order_id))

        return self._in_session(account_id, read)

    def fills(self, account_id: str, broker_order_id: str) -> list[Fill]:
        """Executions of one order, oldest first."""
        return list(self.get_order(account_id, broker_order_id).fills)

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None = None
    ) -> list[BrokerOrder]:
        """Orders entered in [since, until], optionally of one status."""
        self._in_session(account_id, lambda state, now, quotes: None)
        return [to_broker_order(order) for order in self.store.list_orders(self.account_id, since, until, status)]

    def transactions(self, account_id: str, since: datetime, until: datetime) -> list[Transaction]:
        """One trade transaction per fill in [since, until]; buys are negative, commission included."""
        self._in_session(account_id, lambda state, now, quotes: None)
        orders = self.store.list_filled_orders(self.account_id, since, until)
        found = [_transaction(order, fill) for order in orders for fill in order.fills if since <= fill.time <= until]
        return sorted(found, key=lambda item: item.time)  # stable: the store lists orders oldest first

    # ------------------------------------------------------------------------ order helpers

    def _find(self, state: PaperAccountState, order_id: str) -> PaperOrder:
        order = state.orders.get(order_id) or self.store.find_order(self.account_id, order_id)
        if order is None:
            raise NotFoundError(f"Paper order {order_id!r} was not found.")
        return order

    def _by_client_order_id(self, client_order_id: str) -> PaperOrder | None:
        return self.store.find_by_client_order_id(self.account_id, client_order_id)

    def _working_order(self, state: PaperAccountState, order_id: str, verb: str) -> PaperOrder:
        order = self._find(state, order_id)
        if not order.is_working or order.order_id not in state.orders:
            raise OrderCancellationError(f"Order {order_id} is already {order.status.value} and cannot be {verb}.")
        return order

    def _enter(
        self,
        state: PaperAccountState,
        now: datetime,
        quotes: dict[str, Quote],
        request: OrderRequest,
        replacing: PaperOrder | None,
    ) -> BrokerOrder:
        existing = next((o for o in state.orders.values() if o.client_order_id == request.client_order_id), None)
        existing = existing or self._by_client_order_id(request.client_order_id)
        if existing is not None:
            if replacing is None:
                return to_broker_order(existing)  # idempotent: the same client id never enters twice
            raise InvalidOrderError(f"Client order id {request.client_order_id!r} is already used.")
        validate_entry(state, request, quotes.get(request.symbol), self.settings, replacing)
        order = new_order(request, now)
        if replacing is not None:
            order.replaces_order_id = replacing.order_id
            close(replacing, OrderStatus.REPLACED, now, f"Replaced by order {order.order_id}")
        state.orders[order.order_id] = order
        run_pass(state, quotes, now, self.settings, only=order.order_id)
        return to_broker_order(order)


def _mark(symbol: str, position: PaperPosition, quotes: dict[str, Quote]) -> Decimal:
    """Mark price of a holding; its average cost when no quote is available."""
    quote = quotes.get(symbol)
    return quote.mark if quote is not None else position.average_price


def _transaction(order: PaperOrder, fill: Fill) -> Transaction:
    notional = fill.quantity * fill.price
    buy = order.side == OrderSide.BUY
    return Transaction(
        transaction_id=fill.fill_id,
        kind="trade",
        time=fill.time,
        amount=-(notional + fill.commission) if buy else notional - fill.commission,
        description=f"{'Bought' if buy else 'Sold'} {fill.quantity} {order.symbol} @ {fill.price}",
        symbol=order.symbol,
    )
