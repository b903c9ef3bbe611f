"""The always-on service: batch loop, outbox relay, deadline monitor, health, shutdown."""
