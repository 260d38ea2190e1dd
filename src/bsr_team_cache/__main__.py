from bsr_team_cache.cli import run

run()
