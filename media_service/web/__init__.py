"""HTTP routes and their request validation: they only validate, queue and read state."""
