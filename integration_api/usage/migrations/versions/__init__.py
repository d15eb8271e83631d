"""One module per schema revision of the usage log."""
