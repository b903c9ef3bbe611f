"""certrecon: reconciles ministry-channel benefit certifications against the local roster."""

__version__ = "0.1.0"
