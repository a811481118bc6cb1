"""A netlink watch (the link monitor, the nft watch) outlives a failure of its own handler."""

from __future__ import annotations

import asyncio
import logging

from netpath.agent import links


def test_a_watch_whose_handler_fails_logs_it_and_listens_again(monkeypatch, caplog):
    """Anything a datagram's handler raises (a message the decoder did not expect, a callback
    into the agent that fails) used to end the watch's task without a word: the agent then
    heard no link change and no drift again. Now it is logged and the socket opened again;
    the next session is told events may have been lost (first False), so it resynchronises."""
    monkeypatch.setattr(links, "RESTART_DELAY", 0.05)
    sessions = []

    class Failing(links.NetlinkWatch):
        NAME = "test watch"

        async def _session(self, sock, first):
            sessions.append(first)
            if len(sessions) == 1:
                raise ValueError("a message nobody expected")
            await asyncio.sleep(3600)

    async def main():
        watch = Failing(links.GROUPS)
        watch.start()
        for _ in range(100):
            if len(sessions) >= 2:
                break
            await asyncio.sleep(0.05)
        done = watch.task.done()
        await watch.stop()
        return done

    with caplog.at_level(logging.ERROR, logger="netpath.links"):
        ended = asyncio.run(main())
    assert not ended
    assert sessions == [True, False]
    assert any("test watch" in r.getMessage() and "a message nobody expected" in r.getMessage()
               and r.exc_info for r in caplog.records), caplog.text
