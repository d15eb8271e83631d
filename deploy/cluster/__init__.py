"""`make cluster`: gateway replicas behind nginx on this machine (deploy/cluster/cluster.py)."""
