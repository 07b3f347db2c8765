from meshlog.cli import app

app(prog_name="meshlog")
