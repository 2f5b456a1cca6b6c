"""The forms of the orders pages: the order ticket, replace, cancel and the history filters.

Forms only parse what the browser sent; the order rules (which prices a type needs, symbol
shapes, positive amounts) live in utils/services/order_tickets.py and come back as errors on
the field they name.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from flask_wtf import FlaskForm
from wtforms import DateField, Field, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import TextInput

from models import BrokerConnection
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import ArbionError
from utils.services.order_history import OrderFilter
from utils.services.order_tickets import OrderTicket
from utils.web.forms import FiniteDecimalField

ORDER_TYPES = [
    SelectChoice(OrderType.MARKET.value, "Market"),
    SelectChoice(OrderType.LIMIT.value, "Limit"),
    SelectChoice(OrderType.STOP.value, "Stop"),
    SelectChoice(OrderType.STOP_LIMIT.value, "Stop-limit"),
    SelectChoice(OrderType.TRAILING_STOP.value, "Trailing stop"),
]
TIMES_IN_FORCE = [
    SelectChoice(TimeInForce.DAY.value, "Day"),
    SelectChoice(TimeInForce.GTC.value, "Good till cancelled"),
    SelectChoice(TimeInForce.IOC.value, "Immediate or cancel"),
    SelectChoice(TimeInForce.FOK.value, "Fill or kill"),
]
SIDES = [SelectChoice(OrderSide.BUY.value, "Buy"), SelectChoice(OrderSide.SELL_SHORT.value, "Sell short")]
ANY = SelectChoice("", "Any")
STATUSES = [ANY] + [SelectChoice(status.value, status.value.replace("_", " ")) for status in OrderStatus]


def connection_label(connection: BrokerConnection) -> str:
    """How a connection is named on the orders pages."""
    return connection.label or connection.provider.value


class Amount(FiniteDecimalField):
    """A decimal input: a text box with a numeric keyboard ("0.5" reads the same in every locale)."""

    widget = TextInput()


def amount(label: str, required: bool = False) -> Amount:
    """An optional (or required) amount field without rounding."""
    validator = InputRequired(f"Enter a {label.lower()}.") if required else Optional()
    return Amount(label, places=None, validators=[validator], render_kw={"inputmode": "decimal"})


class TicketForm(FlaskForm):
    """An entry order as the trader fills it in (connection choices are the trader's own)."""

    connection_id = SelectField("Connection", coerce=int, validators=[InputRequired("Choose a connection.")])
    symbol = StringField("Symbol", validators=[DataRequired("Enter a symbol such as AAPL or BTC-USD."), Length(max=20)])
    side = SelectField("Side", choices=SIDES, default=OrderSide.BUY.value)
    quantity = amount("Quantity", required=True)
    order_type = SelectField("Order type", choices=ORDER_TYPES, default=OrderType.MARKET.value)
    limit_price = amount("Limit price")
    stop_price = amount("Stop price")
    trail_offset = amount("Trail amount")
    trail_percent = amount("Trail %")
    time_in_force = SelectField("Time in force", choices=TIMES_IN_FORCE, default=TimeInForce.DAY.value)
    stop_loss_price = amount("Stop-loss price")
    take_profit_price = amount("Take-profit price")
    trailing_stop_offset = amount("Trailing stop-loss amount")
    trailing_stop_percent = amount("Trailing stop %")
    idempotency_key = HiddenField()

    def offer(self, connections: list[BrokerConnection]) -> TicketForm:
        """Offer the trader's connections (nothing else can be chosen)."""
        self.connection_id.choices = [SelectChoice(c.id, connection_label(c)) for c in connections]
        return self

    def renew_key(self) -> None:
        """A new Idempotency-Key for the form about to be shown: one key per rendered form, so a
        double submit of it stores one order."""
        self.idempotency_key.data = uuid.uuid4().hex

    def ticket(self) -> OrderTicket:
        """The parsed ticket (the service validates the order rules)."""
        return OrderTicket(
            connection_id=self.connection_id.data,
            symbol=self.symbol.data or "",
            side=OrderSide(self.side.data),
            quantity=self.quantity.data or Decimal(0),
            order_type=OrderType(self.order_type.data),
            time_in_force=TimeInForce(self.time_in_force.data),
            limit_price=self.limit_price.data,
            stop_price=self.stop_price.data,
            trail_offset=self.trail_offset.data,
            trail_percent=self.trail_percent.data,
            stop_loss_price=self.stop_loss_price.data,
            take_profit_price=self.take_profit_price.data,
            trailing_stop_offset=self.trailing_stop_offset.data,
            trailing_stop_percent=self.trailing_stop_percent.data,
            idempotency_key=self.idempotency_key.data or None,
        )

    def show(self, error: ArbionError) -> bool:
        """Put a service error on the field it names; False when it names none of ours."""
        field: Field | None = self._fields.get(str(error.details.get("field", "")))
        if field is None or field.name == "idempotency_key":
            return False
        field.errors = [*field.errors, error.message]
        return True


class ReplaceForm(FlaskForm):
    """A working order's new quantity and/or prices (blank keeps the current value)."""

    quantity = amount("New quantity")
    limit_price = amount("New limit price")
    stop_price = amount("New stop price")

    def validate(self, extra_validators: Any = None) -> bool:
        """Each value parses, and at least one is given."""
        if not super().validate(extra_validators):
            return False
        if all(value is None for value in (self.quantity.data, self.limit_price.data, self.stop_price.data)):
            self.form_errors.append("Enter a new quantity or price.")
            return False
        return True


class HistoryFilterForm(FlaskForm):
    """The history's filters (a GET form: no CSRF token, nothing changes)."""

    since = DateField("From (UTC)", validators=[Optional()])
    until = DateField("To (UTC)", validators=[Optional()])
    symbol = StringField("Symbol", validators=[Optional(), Length(max=20)])
    status = SelectField("Status", choices=STATUSES, default="")
    connection = SelectField("Connection", choices=[ANY], default="")

    def offer(self, connections: list[BrokerConnection]) -> HistoryFilterForm:
        """Offer the trader's connections as a filter."""
        self.connection.choices = [ANY] + [SelectChoice(str(c.id), connection_label(c)) for c in connections]
        return self

    def order_filter(self) -> OrderFilter:
        """The valid filters (a field with an error is shown with it and ignored)."""
        self.validate()
        usable = {name: field.data for name, field in self._fields.items() if not field.errors}
        return OrderFilter(
            since=usable.get("since"),
            until=usable.get("until"),
            symbol=usable.get("symbol") or "",
            status=OrderStatus(usable["status"]) if usable.get("status") else None,
            connection_id=int(usable["connection"]) if usable.get("connection") else None,
        )
