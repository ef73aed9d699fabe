"""Code shared by the DAGs, the simulator and the dashboard of the live-shopping platform."""
