"""Personal data (PIPL/GDPR): consent records, subject export and erasure."""
