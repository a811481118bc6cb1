"""NetPath's network-namespace lab: a router, two or three ISPs, an internet and a LAN client.

`netlab.Lab` builds and destroys the topology; `servers.py`, `client.py` and `impair.py` are
scripts the lab runs inside its namespaces. Tests import it as `from lab import netlab`
(tests/conftest.py puts tests/ on sys.path).
"""
