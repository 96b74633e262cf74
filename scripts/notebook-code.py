"""Write the code cells of every notebook (the papermill `parameters` cells left out: each notebook needs its
own) to one .py file per notebook in a folder, for tools that read code, not notebooks:

    python scripts/notebook-code.py /tmp/nbcode && duplicates --repo /tmp/nbcode
"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "notebook-code")
out.mkdir(parents=True, exist_ok=True)
for notebook in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code = ["".join(c["source"]) for c in cells if "parameters" not in c["metadata"].get("tags", [])]
    (out / f"{notebook.stem}.py").write_text("\n\n".join(code) + "\n")
print(f"{out}: the code cells of every notebook")
