"""onesim: an OpenNebula 7.4 oned XML-RPC simulator (see docs/onesim.md).

Entry points: :class:`onesim.server.SimServer` and the ``onesim`` console script
(:func:`onesim.cli.main`)."""

ONE_VERSION = "7.4.0"
