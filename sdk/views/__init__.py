"""How a finished run looks to a researcher: its results page and its comparison
with another run. Pure functions of runs and their outputs; they fetch nothing."""
