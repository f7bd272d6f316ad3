"""Mail to patients: what is queued when a booking changes, and the dispatcher that sends it."""
