"""Usage: what every member's fetches asked for and which tier served it, kept as events on
each machine and shared through the team registry; metrics, analysis, recommendations and the
dashboard are computed from them. Sits under the team layer, over the domain and adapters."""
