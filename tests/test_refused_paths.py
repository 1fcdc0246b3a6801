"""A refused folder is named in its refusal, in words that fit every box that takes a folder (the
sidebar's workspace, and Setup's image folder, labels file and new workspace), not only the
workspace box; the refusal still reads the same for an existing and a missing server folder."""

from conceptkd_core.store import locations


def test_a_refusal_quotes_what_was_typed_and_says_what_is_allowed(tmp_path):
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    roots = locations.allowed_roots(app, app / "data" / "demo", environ={})
    for text in ("../../etc", "<b>x</b>", "/etc", "/no/such/folder", "data/../../etc"):
        try:
            locations.resolve_typed_path(text, roots)
        except locations.PathRefused as exc:
            message = str(exc)
        else:
            raise AssertionError(f"{text!r} was not refused")
        assert message.startswith(repr(text)), message
        assert "outside the folders this server allows: data/, workspaces/" in message
        assert "workspaces can be opened" not in message  # the image folder and labels file use it too
        assert "\n" not in message


def test_a_long_refused_path_is_shortened_in_the_message(tmp_path):
    roots = locations.allowed_roots(tmp_path, tmp_path / "data" / "demo", environ={})
    try:
        locations.resolve_typed_path("nowhere/" + "x" * 200, roots)
    except locations.PathRefused as exc:
        assert len(str(exc)) < 220 and "…" in str(exc), str(exc)
    else:
        raise AssertionError("not refused")
