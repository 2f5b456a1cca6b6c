import cProfile, pstats, time
from hypothesis import settings, HealthCheck
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import event
from models import Order
from tests.reliability import test_order_state_machine as m
from utils.extensions import db

def test_prof(app):
    steps = [0]
    orig = m.OrdersAndPositions.teardown
    event.listen(Order.status, "set", m._record_move)
    s = settings(max_examples=200, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    with db.session.no_autoflush:
        run_state_machine_as_test(m.OrdersAndPositions, settings=s)
    prof.disable()
    print("200 examples", time.perf_counter() - t)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
