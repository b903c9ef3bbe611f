"""The exception hierarchy. Every error certrecon raises on purpose derives from CertreconError.

``retriable`` tells adapters (and their retry policies, :mod:`certrecon.retry`) whether
trying again can help.
"""

from __future__ import annotations


class CertreconError(Exception):
    """Root of every error certrecon raises deliberately."""

    retriable: bool = False


class ConfigurationError(CertreconError):
    """A setting from the environment or the command line is missing or malformed."""


class InputError(CertreconError):
    """Operator input (a date, a file, an argument) is malformed; the message says which and why."""


class CalendarError(CertreconError):
    """A calendar question cannot be answered (e.g. a date outside the supported range)."""


class FileRejectedError(InputError):
    """An input file was rejected as a whole; ``problems`` lists (line number, reason) pairs.

    ``total`` counts every problem found, also those left out of ``problems`` (a report
    keeps a bounded number).
    """

    def __init__(
        self, message: str, problems: list[tuple[int, str]], *, total: int | None = None
    ) -> None:
        super().__init__(message)
        self.problems = problems
        self.total = len(problems) if total is None else total


class RosterImportError(FileRejectedError):
    """A roster file was rejected as a whole; nothing was imported."""


class EvidenceImportError(FileRejectedError):
    """A comparison evidence file was rejected as a whole; nothing was imported."""


class DatabaseUnavailableError(CertreconError):
    """PostgreSQL could not be reached or dropped the connection; trying again may help."""

    retriable = True


class ConnectionLostError(DatabaseUnavailableError):
    """The PostgreSQL connection died under an operation, whatever asyncpg raised for it."""


class BrokerUnavailableError(CertreconError):
    """The Kafka broker could not be reached or refused a request; trying again may help."""

    retriable = True


class AuthenticationError(CertreconError):
    """A server refused certrecon's credentials, or certrecon refused a server's TLS
    certificate (or the server offered no TLS where it is required). Trying again cannot
    help: the message names the server and what failed, never a secret."""


class MigrationError(CertreconError):
    """The database schema is in a state the shipped migrations do not recognise."""


class EmbeddedServiceError(CertreconError):
    """An embedded PostgreSQL or Kafka-protocol broker failed to start or stop."""


class ReviewError(InputError):
    """A staff review command names an unknown certification or contradicts its state."""


class WorkerCrashedError(CertreconError):
    """A supervised background task of the worker died; the worker stops loudly."""
