"""The drapto TUI: a client of the engine service. It keeps a mirror of the engine's
state (from a snapshot and the events after it) and asks the engine for every change."""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static, TabbedContent

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import EntryChanged
from drapto_engine.core.jobs import EntryStatus
from drapto_tui import themes
from drapto_tui.client import Connect
from drapto_tui.commands import drapto_commands
from drapto_tui.messages import EngineGone, EngineNotice
from drapto_tui.mirror import EngineMirror
from drapto_tui.notices import Notice, describe, failure
from drapto_tui.screens import RefreshesFromEngine
from drapto_tui.screens.add import AddScreen
from drapto_tui.screens.confirm import ConfirmScreen
from drapto_tui.screens.job import JobScreen
from drapto_tui.screens.library import LibraryScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.screens.quit import STOP, QuitScreen
from drapto_tui.settings import load_theme, save_theme, settings_file
from drapto_tui.widgets.event_log import EventLog
from drapto_tui.widgets.flag_row import FlagRow
from drapto_tui.widgets.queue_table import QueueTable

T = TypeVar("T")
TICK_S = 0.25
"""Screens redraw from the mirror four times a second, never once per event."""
LOG_LINES = 2000


class DraptoApp(App[None]):
    CSS_PATH = str(themes.STYLESHEET)
    TITLE = "drapto"
    BINDINGS = [
        Binding("q", "quit_dialog", "Quit"),
        Binding("ctrl+c", "quit_dialog", show=False),
        Binding("ctrl+r", "reconnect", "Reconnect", show=False),
    ]

    def __init__(
        self,
        connect: Connect,
        *,
        paths: Sequence[str] = (),
        settings: Path | None = None,
        browse_root: Path | None = None,
    ) -> None:
        super().__init__()
        self.connect = connect
        self.browse_root = browse_root
        """Where the add dialog's browser starts (default: the current folder)."""
        self.paths = list(paths)
        self.settings = settings or settings_file()
        self.mirror: EngineMirror | None = None
        self._notices: list[Notice] = []
        self.history: deque[Notice] = deque(maxlen=LOG_LINES)
        """Every notice so far (a log pane mounted later starts with them)."""
        self.ticks = 0
        """Redraws so far (tests and scripts wait for one instead of sleeping)."""
        self.unseen = 0
        """Warnings, alerts and refusals the log has that the person has not looked at:
        the header counts them (nothing pops up over the queue)."""
        for theme in themes.THEMES:
            self.register_theme(theme)
        self.theme = load_theme(self.settings) or themes.DEFAULT_THEME

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.VARIABLE_DEFAULTS)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from drapto_commands(self)

    async def on_mount(self) -> None:
        self.watch(self, "theme", self._remember_theme, init=False)
        await self.mount(Static("connecting to the drapto engine…", id="connecting"))
        try:
            mirror = EngineMirror(await self.connect())
            await mirror.start()
        except (DraptoError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, DraptoError) else str(exc)
            self.exit(return_code=1, message=f"drapto: {message}")
            return
        self.mirror = mirror
        gc.freeze()  # the mirror lives as long as the app: full collections skip it
        self.sub_title = "attached to the engine"
        self.tell(Notice("information", "attached to the engine", pop_up=False))
        self.tell_failed()
        if self.paths:
            await self.add_paths(self.paths)
        await self.push_screen(MainScreen(mirror))
        self.run_worker(self._pump(mirror), name="engine-events", group="engine", exclusive=True)
        self.set_interval(TICK_S, self._tick)

    async def _pump(self, mirror: EngineMirror) -> None:
        """The one reader of the engine's events: applied at once, drawn on the tick."""
        async for event in mirror.client.events():
            if mirror.apply(event):
                self.post_message(EngineNotice(event))
        mirror.connected = False
        self.post_message(EngineGone("the connection to the engine ended"))

    def _tick(self) -> None:
        self.ticks += 1
        mirror = self.mirror
        if mirror is not None and mirror.savings_stale:
            mirror.savings_stale = False
            self.run_worker(mirror.refresh_savings(), group="savings", exclusive=True)
        screen = self.screen
        if isinstance(screen, RefreshesFromEngine):
            screen.refresh_from_engine()
        notices, self._notices = self._notices, []
        fresh = sum(n.pop_up for n in notices)
        if fresh and not self._log_shown():
            self.unseen += fresh
        self._title()

    def _log_shown(self) -> bool:
        tabs = self.screen.query(TabbedContent)
        return bool(tabs) and tabs.first().active == "log"

    def _title(self) -> None:
        title = "drapto"
        held = self.mirror.state.schedule if self.mirror is not None else None
        if held is not None and held.paused:  # what waits, and until when (w shows more)
            title += f" · {held.waiting} waiting: {held.paused}"
        if self.unseen:
            title += f" · {self.unseen} new in the log (4)"
        if self.title != title:
            self.title = title

    def seen_log(self) -> None:
        self.unseen = 0
        self._title()

    def _remember_theme(self, theme: str) -> None:
        save_theme(self.settings, theme)

    def tell(self, notice: Notice) -> None:
        """Into the log pane, and into the next tick's pop-ups."""
        self.history.append(notice)
        for screen in self.screen_stack:
            for log in screen.query(EventLog):
                log.add(notice)
        self._notices.append(notice)

    def tell_failed(self) -> None:
        """The entries that had failed before this client attached, in the log."""
        mirror = self.mirror
        if mirror is not None:
            for entry in mirror.state.entries:
                if entry.status is EntryStatus.FAILED:
                    name = mirror.label(entry)
                    self.tell(failure(entry, mirror.job_of(entry), name, pop_up=False))

    @on(EngineNotice)
    def notice(self, message: EngineNotice) -> None:
        event = message.event
        mirror = self.mirror
        if isinstance(event, EntryChanged):
            if mirror is not None:
                entry = event.entry
                self.tell(failure(entry, mirror.job_of(entry), mirror.label(entry)))
            return
        name = mirror.job_name(event.job) if mirror and event.job else None
        described = describe(event, name)
        if described is not None:
            self.tell(described)

    @on(EngineGone)
    def gone(self, message: EngineGone) -> None:
        self.tell(Notice("error", f"{message.reason}: ctrl+r (or the palette) reconnects"))
        self.sub_title = "disconnected"

    @on(FlagRow.Toggled)
    async def flag_toggled(self, message: FlagRow.Toggled) -> None:
        if self.mirror is not None:
            await self._ask(self.mirror.client.set_flag(message.name, message.state))

    # -- actions --

    async def _ask(self, request: Coroutine[Any, Any, T]) -> T | None:
        """Send a request; a refusal becomes a notice, never a crash."""
        try:
            return await request
        except DraptoError as exc:
            self.tell(Notice("error", exc.one_line()))
            return None

    def _selected(self) -> int | None:
        """The entry the keys act on: the highlighted row, or the job screen's entry."""
        tables = self.screen.query(QueueTable)
        if tables:
            return tables.first().selected_entry
        return getattr(self.screen, "entry_id", None)

    def action_add(self) -> None:
        async def added(path: str | None) -> None:
            if path and self.mirror is not None:
                await self.add_paths([path])

        self.push_screen(AddScreen(self.browse_root or Path.cwd()), added)

    async def add_paths(self, paths: list[str]) -> None:
        """Queue paths; what was queued already is said, not silently passed over."""
        if self.mirror is None:
            return
        known = {e.id for e in self.mirror.state.entries}
        entries = await self._ask(self.mirror.client.add_paths(paths))
        if entries is None:
            return
        again = [e for e in entries if e.id in known]
        where = paths[0] if len(paths) == 1 else f"{len(paths)} paths"
        self.tell(Notice("information", f"queued {len(entries) - len(again)} file(s) from {where}"))
        if len(again) == 1:
            entry = again[0]
            self.tell(
                Notice(
                    "warning",
                    f"{Path(entry.input).name} is already queued ({entry.status.value}, "
                    "with the options it was queued with): not added again",
                )
            )
        elif again:
            self.tell(Notice("warning", f"{len(again)} files are already queued: not added again"))

    # -- the library: watched folders and the schedule --

    def action_library(self) -> None:
        if self.mirror is not None and not isinstance(self.screen, LibraryScreen):
            self.push_screen(LibraryScreen(self.mirror))

    def action_watch_add(self) -> None:
        async def chosen(path: str | None) -> None:
            if path and self.mirror is not None:
                folder = str(Path(path).absolute())
                view = await self._ask(self.mirror.client.watch_add(folder))
                if view is not None:
                    self.tell(Notice("information", f"watching {view.folder.path}"))

        self.push_screen(AddScreen(self.browse_root or Path.cwd()), chosen)

    def action_watch_remove(self) -> None:
        screen = self.screen
        folder = screen.selected if isinstance(screen, LibraryScreen) else None
        if folder is None:
            return

        async def confirmed(yes: bool | None) -> None:
            if yes and self.mirror is not None:
                removed = await self._ask(self.mirror.client.watch_remove(folder))
                if removed:
                    self.tell(Notice("information", f"no longer watching {folder}"))

        question = f"Stop watching {folder}? Its files and queued entries stay."
        self.push_screen(ConfirmScreen(question, "Stop watching"), confirmed)

    async def action_watch_rescan(self) -> None:
        screen = self.screen
        folder = screen.selected if isinstance(screen, LibraryScreen) else None
        if self.mirror is not None:
            views = await self._ask(self.mirror.client.watch_rescan(folder))
            if views is not None:
                self.tell(Notice("information", f"rescanning {folder or 'every watched folder'}"))

    async def action_schedule_override(self) -> None:
        if self.mirror is not None:
            on = not self.mirror.state.schedule.override
            await self._ask(self.mirror.client.override_schedule(on))

    def action_detail(self) -> None:
        entry = self._selected()
        if entry is not None and self.mirror is not None and not isinstance(self.screen, JobScreen):
            self.push_screen(JobScreen(self.mirror, entry))

    def action_remove(self) -> None:
        entry_id = self._selected()
        entry = self.mirror.entry(entry_id) if self.mirror and entry_id is not None else None
        if entry is None:
            return
        name = Path(entry.input).name

        async def confirmed(yes: bool | None) -> None:
            if yes and self.mirror is not None:
                await self._ask(self.mirror.client.remove(entry.id))

        question = f"Remove {name} ({entry.status.value}) from the queue? The file stays on disk."
        self.push_screen(ConfirmScreen(question, "Remove"), confirmed)

    async def action_clear_finished(self) -> None:
        if self.mirror is not None:
            cleared = await self._ask(self.mirror.client.clear_finished())
            if cleared is not None:
                self.tell(
                    Notice(
                        "information",
                        f"cleared {cleared} finished entries (failed ones stay)",
                        pop_up=False,
                    )
                )

    async def action_move(self, delta: int) -> None:
        entry_id = self._selected()
        entry = self.mirror.entry(entry_id) if self.mirror and entry_id is not None else None
        if entry is None or self.mirror is None:
            return
        index = self.mirror.state.entries.index(entry)
        await self._ask(self.mirror.client.move(entry.id, max(0, index + delta)))

    async def action_toggle_pause(self) -> None:
        if self.mirror is not None:
            client = self.mirror.client
            await self._ask(client.resume() if self.mirror.state.paused else client.pause())

    async def action_retry(self, entry_id: int | None = None) -> None:
        entry = entry_id if entry_id is not None else self._selected()
        if entry is not None and self.mirror is not None:
            await self._ask(self.mirror.client.retry(entry))

    async def action_cancel_entry(self, entry_id: int | None = None) -> None:
        """Cancel a queued entry at once; a running encode only once the person says so."""
        chosen = entry_id if entry_id is not None else self._selected()
        entry = self.mirror.entry(chosen) if self.mirror and chosen is not None else None
        if entry is None or self.mirror is None:
            return
        if entry.status is not EntryStatus.RUNNING:
            await self._ask(self.mirror.client.cancel(entry.id))
            return

        async def confirmed(yes: bool | None) -> None:
            if yes and self.mirror is not None:
                await self._ask(self.mirror.client.cancel(entry.id))

        question = (
            f"Stop encoding {Path(entry.input).name}? Its encode so far is discarded "
            "(r retries it from the start)."
        )
        self.push_screen(ConfirmScreen(question, "Stop encoding"), confirmed)

    async def action_workers(self, delta: int) -> None:
        if self.mirror is not None:
            workers = max(1, self.mirror.state.workers + delta)
            await self._ask(self.mirror.client.set_workers(workers))

    async def action_reconnect(self) -> None:
        mirror = self.mirror
        if mirror is None or mirror.connected:
            self.notify("already attached to the engine")
            return
        try:
            await mirror.reattach(await self.connect())
        except (DraptoError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, DraptoError) else str(exc)
            self.tell(Notice("error", f"reconnecting failed: {message}"))
            return
        self.sub_title = "attached to the engine"
        self.tell(Notice("information", "attached to the engine again"))
        self.run_worker(self._pump(mirror), name="engine-events", group="engine", exclusive=True)

    def action_quit_dialog(self) -> None:
        if isinstance(self.screen, QuitScreen):
            return

        async def chosen(choice: str | None) -> None:
            if choice is not None:
                await self.leave(stop_engine=choice == STOP)

        self.push_screen(QuitScreen(), chosen)

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q) leaves the engine running too."""
        await self.leave(stop_engine=False)

    async def action_leave(self, stop_engine: bool) -> None:
        await self.leave(stop_engine=stop_engine)

    async def leave(self, *, stop_engine: bool) -> None:
        """Close the connection before exiting: quitting does not await workers' cleanup."""
        if self.mirror is not None:
            client = self.mirror.client
            if stop_engine:
                await self._ask(client.shutdown())
            await client.close()
        self.exit()
