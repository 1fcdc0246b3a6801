"""Importing an exported log on the History page (``explorer.import_log``): the imported edits
replace this browser's session under its id and are saved at once, so the page address, which names
that id, reopens them after a reload."""

import pytest

from conceptkd_core.explorer import import_log, open_explorer, own_session_id, owner_of, session_for_link

from demo_subset import make_demo_subset


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    return open_explorer(make_demo_subset(tmp_path_factory.mktemp("import-log") / "demo", per_split=5))


def test_an_imported_log_is_reopened_by_a_reload(explorer):
    owner = owner_of("browser-a")
    other, _ = session_for_link(explorer, None, owner_of("browser-b"))
    other.apply("remove", 0, 0)
    other.apply("remove", 1, 2)
    log = other.export_json()  # another browser's session, with an id of its own
    mine, _ = session_for_link(explorer, own_session_id(owner), owner)
    mine.apply("remove", 3, 3)
    imported = import_log(explorer, log, mine)
    assert (imported.session_id, imported.owner, imported.autosave_path) == (
        mine.session_id,
        owner,
        mine.autosave_path,
    )
    reloaded, problem = session_for_link(explorer, mine.session_id, owner)
    assert problem is None
    assert [e.op for e in reloaded.events] == ["remove", "remove"] and reloaded.cursor == 2
    assert (reloaded.bank.coef_ == other.bank.coef_).all()
