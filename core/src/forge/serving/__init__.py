"""The serving base every server plugin builds on."""
