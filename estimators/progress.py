"""One progress bar for long loops (the sweep's cells, training epochs), built on rich.

    with ProgressBar(total, "sweep", enabled=not quiet) as bar:
        for item in items:
            bar.describe(f"working on {item}")
            ...
            bar.advance(amount)            # or bar.advance(1, "valid -1.23")

Disabled, it does nothing (and imports nothing). On a terminal rich redraws it in place; without
one (a CI log, a pipe) it prints only its final state, once, so logs are not flooded.
"""


class ProgressBar:
    """A rich progress bar over ``total`` units of work, labelled ``title``; a no-op when disabled.

    ``show_count`` adds a "done/total" column (for countable units such as epochs).
    """

    def __init__(self, total: float, title: str, *, enabled: bool = True, show_count: bool = False):
        self.total, self.title, self.enabled, self.show_count = total, title, enabled, show_count
        self._bar = self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = [TextColumn("[bold]{task.fields[title]}"), BarColumn()]
            if self.show_count:
                columns.append(MofNCompleteColumn())
            columns += [
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
            ]
            self._bar = Progress(*columns)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total, title=self.title)
        return self

    def describe(self, text: str) -> None:
        """Show ``text`` beside the bar."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, amount: float = 1, text: str | None = None) -> None:
        """Count ``amount`` units of work as done (and show ``text``, when given)."""
        if self._bar is not None:
            self._bar.update(
                self._task, advance=amount, **({} if text is None else {"description": text})
            )

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
