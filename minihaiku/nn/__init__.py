"""Networks built on minihaiku modules."""
