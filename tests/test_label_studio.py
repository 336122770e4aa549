"""Label Studio round trips against a real server that the session starts on 127.0.0.1 (the
``label_studio`` fixture of conftest.py): push, annotate through the API as annotators do, pull,
select again. No part of the server is mocked."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from activerm_fast.cli import main
from activerm_fast.data import load
from activerm_fast.data.annotation import next_batch, read_labelled, write_batch
from activerm_fast.data.annotation_tools import ToolPair, merge_pull, pair_id
from activerm_fast.data.label_studio import (
    label_config,
    label_studio_tasks,
    pull_label_studio,
    push_label_studio,
    write_label_studio_tasks,
)
from activerm_fast.data.preference_data import read_annotations

LEFT, RIGHT, TIE = "Left is better", "Right is better", "Tie"
# a small, fast model for the loop's refits
SMALL = {"pool_size": 3000, "ensemble": 1}


@pytest.fixture(scope="module")
def data():
    """Twelve arena-bench prompts with their texts (about 170 responses)."""
    full = load("arena-bench")
    return full.subset(full.prompt_ids < 12)


def keys(pairs) -> set[tuple[int, int]]:
    return {(min(i, j), max(i, j)) for i, j in np.asarray(pairs).tolist()}


@pytest.mark.parametrize(
    ("votes", "skipped", "status", "label"),
    [
        ({"first": 1}, 0, "labelled", 1),
        ({"first": 1, "second": 2}, 0, "labelled", 0),
        ({"first": 2, "second": 1, "tie": 1}, 0, "labelled", 1),
        ({"second": 1}, 3, "labelled", 0),  # skips are no votes
        ({"first": 1, "second": 1}, 0, "tie", None),
        ({"first": 1, "tie": 1}, 0, "tie", None),
        ({"first": 1, "tie": 2}, 0, "tie", None),
        ({}, 2, "skipped", None),
        ({}, 0, "pending", None),
    ],
)
def test_the_vote_rule(votes, skipped, status, label):
    pair = ToolPair("pair-x", 0, 1, votes, skipped, "here")
    assert (pair.status, pair.label) == (status, label)


def test_a_pull_never_writes_a_labelled_pair_twice(data, tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"first": 20, "second": 0, "label": 1}\n')  # by hand, other order
    first_wins = ToolPair(pair_id(data, 0, 20), 0, 20, {"first": 1}, 0, "task 1")
    summary = merge_pull(data, [first_wins], labelled)
    assert (summary.labelled_new, summary.labelled_already, summary.changed) == (0, 1, 1)
    assert labelled.read_text() == '{"first": 20, "second": 0, "label": 1}\n'
    with pytest.raises(ValueError, match="task 2: pair_id 'pair-.*' is also at task 1"):
        merge_pull(
            data, [first_wins, ToolPair(first_wins.pair_id, 0, 20, {}, 0, "task 2")], labelled
        )


def test_a_labelled_pair_the_tool_now_calls_a_tie_stays_labelled_only(data, tmp_path):
    """A decided pair whose votes later tie is kept, counted as already there and changed; it
    was written to the held file as well (one pair on two lines of the two files)."""
    labelled = tmp_path / "labelled.jsonl"
    decided = ToolPair(pair_id(data, 0, 20), 0, 20, {"first": 2}, 0, "task 1")
    assert merge_pull(data, [decided], labelled).labelled_new == 1
    tied = ToolPair(decided.pair_id, 0, 20, {"first": 2, "second": 2}, 0, "task 1")
    assert tied.status == "tie"
    summary = merge_pull(data, [tied], labelled)
    assert (summary.labelled_new, summary.labelled_already, summary.changed) == (0, 1, 1)
    assert (summary.ties, summary.pending) == (0, 0) and summary.held.read_text() == ""
    assert "1 of them now with another answer in the tool (the other winner or a tie), kept" in (
        summary.line("here")
    )
    assert read_labelled(labelled, data.n)[1].tolist() == [1]


def test_a_pull_keeps_the_held_pairs_its_export_does_not_hold(data, tmp_path):
    """An export of another batch (or an older, or an empty one) replaced the held file whole:
    earlier ties were lost and pairs still with annotators proposed again. They are kept, and
    dropped once a pull decides them or holds them afresh."""
    labelled = tmp_path / "labelled.jsonl"
    tie = ToolPair(pair_id(data, 0, 20), 0, 20, {"first": 1, "second": 1}, 0, "task 1")
    out = ToolPair(pair_id(data, 3, 41), 3, 41, {}, 0, "task 2")  # pending
    first = merge_pull(data, [tie, out], labelled)
    assert (first.ties, first.pending, first.held_kept) == (1, 1, 0)
    other = ToolPair(pair_id(data, 5, 60), 5, 60, {}, 0, "task 1")  # the next batch's export
    second = merge_pull(data, [other], labelled)
    assert (second.pending, second.held_kept) == (1, 2)
    assert "1 pending, 2 held before and not in here kept;" in second.line("here")
    held = read_annotations(second.held, data.n)
    assert held[0].tolist() == [[0, 20], [3, 41], [5, 60]]
    assert held[1][0] == 0.5 and np.isnan(held[1][1:]).all()
    assert merge_pull(data, [], labelled).held_kept == 3  # an empty export loses nothing
    decided = ToolPair(out.pair_id, 3, 41, {"second": 2}, 0, "task 2")
    third = merge_pull(data, [decided], labelled)
    assert (third.labelled_new, third.held_kept) == (1, 2)
    assert read_annotations(third.held, data.n)[0].tolist() == [[0, 20], [5, 60]]
    assert read_labelled(labelled, data.n)[0].tolist() == [[3, 41]]


def test_a_pull_keeps_the_files_permissions(data, tmp_path):
    """The files were rewritten through mkstemp, 0600: a shared labelled file became unreadable
    to the rest of the team."""
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("")
    labelled.chmod(0o664)
    umask = os.umask(0o022)
    try:
        found = [ToolPair(pair_id(data, 0, 20), 0, 20, {"first": 1}, 0, "task 1")]
        summary = merge_pull(data, found, labelled)
    finally:
        os.umask(umask)
    assert summary.labelled_new == 1
    assert labelled.stat().st_mode & 0o777 == 0o664
    assert summary.held.stat().st_mode & 0o777 == 0o644  # a new file: the umask's


def test_an_annotation_with_two_answers_or_an_odd_cancel_flag_is_refused(data, tmp_path):
    """Two 'preference' results that disagree were read as the first, silently; a
    was_cancelled of "false" (text) turned a vote into a skip."""
    (task,) = label_studio_tasks(data, np.array([[0, 20]]))

    def pref(choice):
        return {"from_name": "preference", "to_name": "x", "type": "choices",
                "value": {"choices": [choice]}}  # fmt: skip

    export = tmp_path / "export.json"
    cases = [
        ({"result": [pref("Left is better"), pref("Right is better")]}, "has several answers"),
        ({"was_cancelled": "false", "result": [pref("Left is better")]}, "'was_cancelled' must"),
    ]
    for extra, message in cases:
        annotation = {"id": 7, "completed_by": 1, **extra}
        export.write_text(json.dumps([{"id": 3, **task, "annotations": [annotation]}]))
        with pytest.raises(ValueError, match=rf"export\.json: task 3, annotation 7: .*{message}"):
            pull_label_studio(data, tmp_path / "l.jsonl", export=export)
    same = {"id": 7, "completed_by": 1, "result": [pref("Left is better")] * 2}
    export.write_text(json.dumps([{"id": 3, **task, "annotations": [same]}]))
    assert pull_label_studio(data, tmp_path / "l.jsonl", export=export).labelled_new == 1


def test_a_task_whose_rows_are_swapped_against_its_texts_is_refused(data, tmp_path):
    """The pair id is the same either way round: a task whose first and second were swapped
    while the texts shown stayed gave the vote to the other response."""
    (task,) = label_studio_tasks(data, np.array([[0, 20]]))
    left = {"from_name": "preference", "to_name": "x", "type": "choices",
            "value": {"choices": ["Left is better"]}}  # fmt: skip
    annotation = {"id": 1, "completed_by": 1, "result": [left]}
    export = tmp_path / "export.json"
    for first, second, what in ((20, 0, "in the other order"), (0, 21, None)):
        swapped = {**task["data"], "first": first, "second": second}
        if what is None:  # another pair's row under the same texts: named as other texts
            swapped["pair_id"] = pair_id(data, first, second)
            what = "other texts"
        export.write_text(json.dumps([{"id": 4, "data": swapped, "annotations": [annotation]}]))
        with pytest.raises(ValueError, match=rf"^.*export\.json: task 4: the responses shown are "
                           rf"{what} than rows {first} \(first\) and {second} \(second\)"):  # fmt: skip
            pull_label_studio(data, tmp_path / "l.jsonl", export=export)
    assert not (tmp_path / "l.jsonl").exists()


def prediction_scores(server, project: str) -> dict[int, float]:
    """Each task's prediction score."""
    found = server.call("GET", f"/api/predictions/?project={server.project_id(project)}")
    return {p["task"]: p["score"] for p in found}


def test_round_trip_closes_the_loop(label_studio, data, tmp_path):
    server, project = label_studio, "round trip"
    labelled = tmp_path / "labelled.jsonl"
    held = tmp_path / "labelled.held.jsonl"
    batch, note = next_batch(data, *read_labelled(labelled, data.n), 8, **SMALL)
    assert "no labels yet" in note

    # a push cut off after three tasks, run again: the other five are added, none twice
    first = push_label_studio(data, batch[:3], project, url=server.url, token=server.token)
    assert (first.created, first.already) == (3, 0)
    again = push_label_studio(data, batch, project, url=server.url, token=server.token)
    assert (again.created, again.already, again.project_id) == (5, 3, first.project_id)
    tasks = server.export(project)
    by_pair = {task["data"]["pair_id"]: task for task in tasks}
    assert len(tasks) == len(by_pair) == 8
    assert set(by_pair) == {pair_id(data, i, j) for i, j in batch.tolist()}
    scores = prediction_scores(server, project)  # what the Data Manager sorts by
    for task in tasks:
        assert scores[task["id"]] == pytest.approx(task["data"]["score"])
        assert task["data"]["first_text"] == data.responses[task["data"]["first"]]
    task = [by_pair[pair_id(data, i, j)] for i, j in batch.tolist()]

    # annotators: two of them on some tasks, a change of mind, a skip, a tie; two left pending
    second = server.add_annotator("annotator-two")
    server.annotate(task[0]["id"], LEFT)
    server.annotate(task[1]["id"], RIGHT)
    server.annotate(task[1]["id"], RIGHT, annotator=second)
    server.annotate(task[2]["id"], LEFT)
    server.annotate(task[2]["id"], RIGHT, annotator=second)  # one each way: a tie
    server.annotate(task[3]["id"], TIE)
    server.annotate(task[4]["id"], None, cancelled=True)  # skipped
    server.annotate(task[5]["id"], LEFT)
    server.annotate(task[5]["id"], RIGHT)  # the same annotator's later answer counts
    server.annotate(task[5]["id"], LEFT, annotator=second)
    server.annotate(task[5]["id"], RIGHT, annotator=second)

    summary = pull_label_studio(data, labelled, project=project, url=server.url, token=server.token)
    assert summary.held == held
    assert (summary.labelled_new, summary.ties, summary.skipped, summary.pending) == (3, 2, 1, 2)
    assert summary.annotations == 1 + 2 + 2 + 1 + 0 + 2
    pairs, labels = read_labelled(labelled, data.n)
    got = dict(zip(map(tuple, pairs.tolist()), labels.tolist(), strict=True))
    want = {tuple(batch[0]): 1, tuple(batch[1]): 0, tuple(batch[5]): 0}
    assert got == want
    held_pairs, held_labels = read_annotations(held, data.n)
    assert keys(held_pairs) == keys(batch[[2, 3, 4, 6, 7]])
    assert sorted(held_labels[~np.isnan(held_labels)].tolist()) == [0.5, 0.5]

    # a second pull of the same annotations changes nothing
    before = labelled.read_bytes(), held.read_bytes()
    repeat = pull_label_studio(data, labelled, project=project, url=server.url, token=server.token)
    assert (repeat.labelled_new, repeat.labelled_already, repeat.changed) == (0, 3, 0)
    assert (labelled.read_bytes(), held.read_bytes()) == before

    # select again: the model is refitted on the three labels, nothing in the tool comes back
    batch2, note2 = next_batch(data, pairs, labels, 8, exclude=held_pairs, **SMALL)
    assert "model fitted on 3 labelled pairs" in note2
    assert not keys(batch2) & keys(batch)
    push2 = push_label_studio(data, batch2, project, url=server.url, token=server.token)
    assert (push2.created, push2.already) == (8, 0)

    # the pending tasks of round one and a task of round two are answered; pull once more
    server.annotate(task[6]["id"], RIGHT)
    server.annotate(task[4]["id"], LEFT, annotator=second)  # a skipped task answered later
    new_task = {t["data"]["pair_id"]: t for t in server.export(project)}[
        pair_id(data, *batch2[0].tolist())
    ]
    server.annotate(new_task["id"], LEFT)
    third = pull_label_studio(data, labelled, project=project, url=server.url, token=server.token)
    assert (third.labelled_new, third.labelled_already) == (3, 3)
    assert (third.ties, third.skipped, third.pending) == (2, 0, 1 + 7)
    pairs, labels = read_labelled(labelled, data.n)
    assert len(pairs) == len(keys(pairs)) == 6
    assert labelled.read_bytes().startswith(before[0])  # earlier labels kept as they were


def test_pull_from_an_export_file_equals_the_server(label_studio, data, tmp_path):
    server, project = label_studio, "export file"
    batch = np.array([[0, 15], [3, 40], [7, 90]])
    push_label_studio(data, batch, project, url=server.url, token=server.token, ties=False)
    assert (
        "Tie"
        not in server.call("GET", f"/api/projects/{server.project_id(project)}")["label_config"]
    )
    tasks = {t["data"]["first"]: t for t in server.export(project)}
    server.annotate(tasks[0]["id"], RIGHT)
    server.annotate(tasks[3]["id"], LEFT)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(server.export(project)))

    from_server = pull_label_studio(
        data, tmp_path / "a.jsonl", project=project, url=server.url, token=server.token
    )
    from_file = pull_label_studio(data, tmp_path / "b.jsonl", export=export)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert (tmp_path / "a.held.jsonl").read_text() == (tmp_path / "b.held.jsonl").read_text()
    assert from_file.labelled_new == from_server.labelled_new == 2

    # malformed exports are refused naming the task
    broken = json.loads(export.read_text())
    task_id = broken[0]["id"]
    broken[0]["annotations"] = [
        {
            "id": 1,
            "completed_by": 1,
            "result": [{"from_name": "preference", "value": {"choices": ["Maybe"]}}],
        }
    ]
    export.write_text(json.dumps(broken))
    with pytest.raises(
        ValueError, match=f"task {task_id}, annotation 1: 'preference' must be one of"
    ):
        pull_label_studio(data, tmp_path / "c.jsonl", export=export)
    for who in ([1], {"id": [1]}, True):  # an annotator is a user id (a number or text)
        broken[0]["annotations"][0]["completed_by"] = who
        export.write_text(json.dumps(broken))
        with pytest.raises(
            ValueError, match=rf"task {task_id}: annotation #0 has completed_by .*; expected a user"
        ):
            pull_label_studio(data, tmp_path / "c.jsonl", export=export)
    broken[0]["annotations"] = []
    del broken[0]["data"]["pair_id"]
    export.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=f"task {task_id}: no pair_id"):
        pull_label_studio(data, tmp_path / "c.jsonl", export=export)
    other = load("arena-bench").subset(load("arena-bench").prompt_ids >= 12)
    with pytest.raises(ValueError, match="another dataset"):
        pull_label_studio(
            other, tmp_path / "c.jsonl", project=project, url=server.url, token=server.token
        )
    assert not (tmp_path / "c.jsonl").exists()


def test_an_import_file_for_a_tool_without_api_access(label_studio, data, tmp_path):
    server, project = label_studio, "import file"
    batch = np.array([[1, 2], [30, 60]])
    path = tmp_path / "tasks.json"
    assert write_label_studio_tasks(data, batch, path, scores=[2.5, 0.75]) == 2
    # what the interface's Import does with the file, through the same endpoint
    created = server.call(
        "POST", "/api/projects", {"title": project, "label_config": label_config()}
    )
    server.call("POST", f"/api/projects/{created['id']}/import", json.loads(path.read_text()))
    assert sorted(prediction_scores(server, project).values()) == [0.75, 2.5]
    # a push of the same pairs finds them: nothing added
    push = push_label_studio(data, batch, project, url=server.url, token=server.token)
    assert (push.created, push.already) == (0, 2)
    summary = pull_label_studio(
        data, tmp_path / "l.jsonl", project=project, url=server.url, token=server.token
    )
    assert (summary.labelled_new, summary.pending) == (0, 2)


def test_the_import_file_comes_with_its_labelling_configuration(label_studio, tmp_path, capsys):
    """export --to label-studio --out writes the tasks and the configuration they need (with
    --no-tie, none offers a tie); a project made from the two takes annotations that import
    reads back. Options only a server takes are refused in one line, nothing written."""
    server, project = label_studio, "import file and configuration"
    batch, tasks = tmp_path / "batch.jsonl", tmp_path / "tasks.json"
    write_batch(batch, load("arena-bench"), np.array([[1, 2], [30, 60]]))
    export = ["export", "--to", "label-studio", "--data", "arena-bench", "--batch", str(batch)]
    for extra, message in (
        (["--annotators", "2"], "--annotators 2 is a project setting an import file cannot"),
        (["--project", project], "--project pushes to a server and --out writes an import file"),
    ):
        assert main([*export, "--out", str(tasks), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
        assert not tasks.exists()
    assert main([*export, "--out", str(tasks), "--no-tie"]) == 0
    config = tmp_path / "tasks.label_config.xml"
    assert str(config) in capsys.readouterr().out
    assert config.read_text() == label_config(ties=False) and "Tie" not in config.read_text()
    # what the interface does with the two files, through the same endpoints
    created = server.call(
        "POST", "/api/projects", {"title": project, "label_config": config.read_text()}
    )
    server.call("POST", f"/api/projects/{created['id']}/import", json.loads(tasks.read_text()))
    server.annotate(server.export(project)[0]["id"], RIGHT)
    labelled = tmp_path / "labelled.jsonl"
    pull = ["import", "--from", "label-studio", "--data", "arena-bench", "--project", project]
    pull += ["--labelled", str(labelled), "--url", server.url, "--token", server.token]
    assert main(pull) == 0
    assert "1 newly labelled pair" in capsys.readouterr().out
    pairs, labels = read_labelled(labelled, load("arena-bench").n)
    assert keys(pairs) <= {(1, 2), (30, 60)} and labels.tolist() == [0]


def test_a_personal_access_token_works_too(label_studio, data):
    server = label_studio
    personal = server.call("POST", "/api/token/", {})["token"]
    push = push_label_studio(
        data, np.array([[4, 5]]), "personal token", url=server.url, token=personal
    )
    assert push.created == 1


def test_faults_name_the_url_or_project(label_studio, data, tmp_path, capsys):
    import label_studio_server

    server = label_studio
    down = f"http://127.0.0.1:{label_studio_server.free_port()}"
    with pytest.raises(ValueError, match=f"cannot reach Label Studio at {down} "):
        push_label_studio(data, np.array([[0, 1]]), "anything", url=down, token="x")
    with pytest.raises(ValueError, match=f"Label Studio at {server.url} refused the token"):
        push_label_studio(data, np.array([[0, 1]]), "anything", url=server.url, token="wrong")
    with pytest.raises(ValueError, match=f"Label Studio at {server.url} has no project 'nowhere'"):
        pull_label_studio(
            data, tmp_path / "l.jsonl", project="nowhere", url=server.url, token=server.token
        )
    assert not (tmp_path / "l.jsonl").exists()

    batch = tmp_path / "batch.jsonl"
    write_batch(batch, load("arena-bench"), np.array([[0, 1]]))
    for argv, named in [
        (["export", "--to", "label-studio", "--url", down, "--token", "x"], down),
        (["export", "--to", "label-studio", "--url", server.url, "--token", "wrong"], server.url),
        (
            [
                "import",
                "--from",
                "label-studio",
                "--labelled",
                str(tmp_path / "l.jsonl"),
                "--url",
                server.url,
                "--token",
                server.token,
            ],
            "'nowhere'",
        ),
    ]:
        common = ["--data", "arena-bench", "--project", "nowhere"]
        if argv[0] == "export":
            common += ["--batch", str(batch)]
        assert main([*argv, *common]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and named in err and "Traceback" not in err, err


def test_the_loop_on_the_command_line(label_studio, tmp_path, capsys, monkeypatch):
    server, project = label_studio, "command line"
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    labelled, held = tmp_path / "labelled.jsonl", tmp_path / "labelled.held.jsonl"
    batch, batch2 = tmp_path / "batch.jsonl", tmp_path / "batch2.jsonl"
    select = [
        "select",
        "--data",
        "arena-bench",
        "--labelled",
        str(labelled),
        "--k",
        "4",
        "--pool-size",
        "3000",
        "--ensemble",
        "1",
    ]
    assert main([*select, "--out", str(batch)]) == 0
    assert (
        main(
            [
                "export",
                "--to",
                "label-studio",
                "--data",
                "arena-bench",
                "--batch",
                str(batch),
                "--project",
                project,
            ]
        )
        == 0
    )
    assert "created 4 tasks, 0 already there" in capsys.readouterr().out
    tasks = server.export(project)
    server.annotate(tasks[0]["id"], LEFT)
    server.annotate(tasks[1]["id"], RIGHT)
    pull = [
        "import",
        "--from",
        "label-studio",
        "--data",
        "arena-bench",
        "--project",
        project,
        "--labelled",
        str(labelled),
    ]
    assert main(pull) == 0
    out = capsys.readouterr().out
    assert "2 newly labelled pairs" in out and "2 pending" in out and str(held) in out
    assert main([*select, "--exclude", str(held), "--out", str(batch2)]) == 0
    assert "model fitted on 2 labelled pairs" in capsys.readouterr().out
    first = read_annotations(batch, 4461)[0]
    second = read_annotations(batch2, 4461)[0]
    assert not keys(first) & keys(second)
    assert main(pull) == 0
    assert "0 newly labelled pairs" in capsys.readouterr().out
