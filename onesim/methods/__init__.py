"""XML-RPC method implementations; importing this package registers them all."""

from . import image, misc, secgroup, tmpl, user, vm, vnet  # noqa: F401
