"""econe: an Amazon EC2 Query API server for OpenNebula."""

import warnings

# Connexion imports Starlette's test client at import time, which warns (on every start of
# econe-server) that it would rather use httpx2; econe never uses that client.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
