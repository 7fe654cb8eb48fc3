"""Context for the README's test: the workflow of examples/test_expense.py."""

from test_expense import expense_approval  # noqa: F401

# fragment
