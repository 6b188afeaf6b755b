"""Fine-tuning job statuses, as the Mistral API names them."""

SUCCESS = "SUCCESS"
FAILED_STATUSES = frozenset({"FAILED", "FAILED_VALIDATION", "CANCELLED"})
# A job in one of these never changes again.
TERMINAL_STATUSES = FAILED_STATUSES | {SUCCESS}
