"""Reports: the terminal table now; plots and HTML dashboards later."""
