"""GridLink's own common library: settings, event contracts, outbox relay, consumers."""
