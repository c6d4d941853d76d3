from vmjournal.cli import app

app()
