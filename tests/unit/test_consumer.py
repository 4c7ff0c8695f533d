"""Which failures a consumer waits out and redelivers, rather than dead-lettering the message."""

from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError

from shared.consumer import is_transient


def test_unreachable_or_busy_infrastructure_is_transient():
    assert is_transient(AutoReconnect("primary gone"))
    assert is_transient(TimeoutError())
    # a write conflict between two transactions: the same event goes through on a later try
    assert is_transient(PyMongoError("write conflict", error_labels=["TransientTransactionError"]))


def test_bugs_and_refusals_are_not_transient():
    assert not is_transient(ValueError("bad"))
    assert not is_transient(OperationFailure("not authorized", code=13))
