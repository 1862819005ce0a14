"""A readable summary of one run for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    cell = results["cell"]
    title = (f"{cell['model']} on {cell['dataset']}: {cell['pruner']} at {cell['ratio']:.0%} removed, "
             f"check {cell['sanity_check']}, seed {cell['seed']}")
    if results.get("skipped"):
        console.print(f"[dim]already complete, skipped:[/dim] {title}")
    table = Table(title=title, show_lines=False)
    table.add_column("layer")
    table.add_column("shape")
    table.add_column("kept", justify="right")
    table.add_column("total", justify="right")
    table.add_column("density", justify="right")
    for layer in results["layers"]:
        table.add_row(layer["name"], "x".join(map(str, layer["shape"])), f"{layer['kept']:,}", f"{layer['total']:,}",
                      f"{layer['kept'] / layer['total']:.3f}")
    table.add_row("[b]all[/b]", "", f"[b]{results['kept']:,}[/b]", f"[b]{results['total']:,}[/b]",
                  f"[b]{results['density']:.4f}[/b]")
    console.print(table)
    status = results["status"]
    line = (f"status [b]{status}[/b]   final test acc [b]{results['final_acc']:.2f} %[/b]   "
            f"best {results['best_acc']:.2f} %   epochs {results['epochs']}   wall {results['wall_time_s']:.0f} s")
    if results.get("trunk"):
        trunk = results["trunk"]
        line += f"   dense trunk {trunk['hash']} ({'reused' if trunk['reused'] else 'trained'})"
    if results.get("reason"):
        line += f"   reason: {results['reason']}"
    console.print(line)
