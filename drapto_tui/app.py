"""The drapto TUI: a client of the engine service. It keeps a mirror of the engine's
state (from a snapshot and the events after it) and asks the engine for every change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.widgets import Static

import themes
from drapto_engine.core.errors import DraptoError
from drapto_engine.core.events import Alert, JobFailed, RolledBack
from drapto_tui.link import Client, EngineLink
from drapto_tui.messages import EngineGone, EngineNotice
from drapto_tui.screens.add import AddScreen
from drapto_tui.screens.job import JobScreen
from drapto_tui.screens.main import MainScreen
from drapto_tui.screens.quit import STOP, QuitScreen
from drapto_tui.settings import load_theme, save_theme, settings_file
from drapto_tui.widgets.event_log import EventLog, describe
from drapto_tui.widgets.flags_panel import FlagToggled
from drapto_tui.widgets.queue_table import QueueTable

T = TypeVar("T")
TICK_S = 0.45  # redraws a little over twice a second: live enough, cheap when idle


class DraptoApp(App[None]):
    CSS_PATH = str(themes.STYLESHEET)
    TITLE = "drapto"
    BINDINGS = [Binding("q", "quit_dialog", "Quit"), Binding("ctrl+c", "quit_dialog", show=False)]

    def __init__(
        self,
        connect: Callable[[], Awaitable[Client]],
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
        self.link: EngineLink | None = None
        for theme in themes.THEMES:
            self.register_theme(theme)
        self.theme = load_theme(self.settings) or themes.DEFAULT_THEME

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.VARIABLE_DEFAULTS)

    async def on_mount(self) -> None:
        self.watch(self, "theme", self._remember_theme, init=False)
        await self.mount(Static("connecting to the drapto engine…", id="connecting"))
        try:
            client = await self.connect()
            link = EngineLink(client)
            await link.start()
        except (DraptoError, OSError) as exc:
            message = exc.one_line() if isinstance(exc, DraptoError) else str(exc)
            self.exit(return_code=1, message=f"drapto: {message}")
            return
        self.link = link
        self.sub_title = "attached to the engine"
        if self.paths:
            await self._ask(client.add_paths(self.paths))
        await self.push_screen(MainScreen(link))
        self.run_worker(self._pump(link), name="engine-events", group="engine")
        self.set_interval(TICK_S, self._tick)

    async def _pump(self, link: EngineLink) -> None:
        async for event in link.client.events():
            if link.apply(event):
                self.post_message(EngineNotice(event))
        self.post_message(EngineGone("the engine closed the connection"))

    def _tick(self) -> None:
        refresh = getattr(self.screen, "refresh_from_engine", None)
        if refresh is not None:
            refresh()

    def _remember_theme(self, theme: str) -> None:
        save_theme(self.settings, theme)

    @on(EngineNotice)
    def notice(self, message: EngineNotice) -> None:
        for screen in self.screen_stack:
            for log in screen.query(EventLog):
                log.add(message.event)
        described = describe(message.event)
        if described is not None and isinstance(message.event, Alert | RolledBack | JobFailed):
            severity, text = described
            self.notify(text, severity=severity, timeout=6)  # type: ignore[arg-type]

    @on(EngineGone)
    def gone(self, message: EngineGone) -> None:
        self.notify(message.reason, severity="error", timeout=30)
        self.sub_title = "disconnected"

    @on(FlagToggled)
    async def flag_toggled(self, message: FlagToggled) -> None:
        if self.link is not None:
            await self._ask(self.link.client.set_flag(message.name, message.state))

    # -- actions --

    async def _ask(self, request: Coroutine[Any, Any, T]) -> T | None:
        """Send a request; a refusal becomes a notification, never a crash."""
        try:
            return await request
        except DraptoError as exc:
            request.close()
            self.notify(exc.one_line(), severity="error", timeout=8)
            return None

    def _selected(self) -> int | None:
        tables = self.screen.query(QueueTable)
        return tables.first().selected_entry if tables else None

    def action_add(self) -> None:
        async def added(path: str | None) -> None:
            if path and self.link is not None:
                entries = await self._ask(self.link.client.add_paths([path]))
                if entries is not None:
                    self.notify(f"queued {len(entries)} file(s) from {path}")

        self.push_screen(AddScreen(self.browse_root or Path.cwd()), added)

    def action_detail(self) -> None:
        entry = self._selected()
        if entry is not None and self.link is not None:
            self.push_screen(JobScreen(self.link, entry))

    async def action_remove(self) -> None:
        entry = self._selected()
        if entry is not None and self.link is not None:
            await self._ask(self.link.client.remove(entry))

    async def action_move(self, delta: int) -> None:
        entry = self._selected()
        if entry is None or self.link is None:
            return
        order = [e.id for e in self.link.state.entries]
        await self._ask(self.link.client.move(entry, max(0, order.index(entry) + delta)))

    async def action_toggle_pause(self) -> None:
        if self.link is not None:
            client = self.link.client
            await self._ask(client.resume() if self.link.state.paused else client.pause())

    async def action_retry(self, entry_id: int | None = None) -> None:
        entry = entry_id if entry_id is not None else self._selected()
        if entry is not None and self.link is not None:
            await self._ask(self.link.client.retry(entry))

    async def action_cancel_entry(self, entry_id: int | None = None) -> None:
        entry = entry_id if entry_id is not None else self._selected()
        if entry is not None and self.link is not None:
            await self._ask(self.link.client.cancel(entry))

    async def action_workers(self, delta: int) -> None:
        if self.link is not None:
            workers = max(1, self.link.state.workers + delta)
            await self._ask(self.link.client.set_workers(workers))

    def action_quit_dialog(self) -> None:
        async def chosen(choice: str | None) -> None:
            if choice is not None:
                await self.leave(stop_engine=choice == STOP)

        self.push_screen(QuitScreen(), chosen)

    async def leave(self, *, stop_engine: bool) -> None:
        """Close the connection before exiting: quitting does not await workers' cleanup."""
        if self.link is not None:
            client = self.link.client
            if stop_engine:
                await self._ask(client.shutdown())
            await client.close()
        self.exit()
