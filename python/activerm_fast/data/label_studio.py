"""Label Studio, both ways: a batch of pairs out as tasks of a pairwise project, the annotators'
answers back into the labelled file that ``select`` reads.

Out (:func:`push_label_studio`): the project is found by its title, or created, with
:func:`label_config` (the two prompts and responses side by side, left = the pair's first
response, and a required choice of left, right and optionally tie); one task per pair carries
the pair's batch record (rows, prompt labels, texts), its ``pair_id``, ``rank`` and ``score``,
and the score is also the task's prediction score, so the Data Manager sorts the queue by it.
Tasks whose ``pair_id`` the project already holds are not sent again: a push cut off part-way
is simply run again. Without a server, :func:`write_label_studio_tasks` writes the same tasks
as a JSON file to import in the Label Studio interface.

Back (:func:`pull_label_studio`): the project's JSON export, from the server or an export file
of the interface, is read task by task; each annotator's latest annotation is their vote
(a cancelled one, "Skip" in the interface, counts as skipped), and
:func:`~activerm_fast.data.annotation_tools.merge_pull` combines the votes and merges the pairs
into the labelled and held files, by ``pair_id``.

The server is spoken to through its REST API with the standard library: ``label-studio-sdk``
2.x needs ``opencv-python-headless`` 4.12, which holds NumPy below 2.3. The token is a legacy
token (``Authorization: Token``) or a personal access token (a JWT, exchanged at
``/api/token/refresh`` for an access token); ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``
are read when the URL or token is not given.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import annotation_tools as tools
from .dataset import Dataset
from .json_files import json_document

URL_VARIABLE = "LABEL_STUDIO_URL"
TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
# the name of the choice in the labelling configuration, and each choice's vote
CHOICE_NAME = "preference"
CHOICES = {"Left is better": tools.FIRST, "Right is better": tools.SECOND, "Tie": tools.TIE}
MODEL_VERSION = "activerm-fast"
# tasks per import request: small enough that an interrupted push loses little work
_CHUNK = 200

_CONFIG = """<View>
  <Style>.activerm-pair {{ display: flex; gap: 1em }} .activerm-side {{ flex: 1 }}</Style>
  <View className="activerm-pair">
    <View className="activerm-side">
      <Header value="Left"/>
      <Text name="first_prompt" value="$first_prompt_text"/>
      <Text name="first_response" value="$first_text"/>
    </View>
    <View className="activerm-side">
      <Header value="Right"/>
      <Text name="second_prompt" value="$second_prompt_text"/>
      <Text name="second_response" value="$second_text"/>
    </View>
  </View>
  <Header value="Which response is better?"/>
  <Choices name="{name}" toName="first_response" choice="single-radio" required="true"
           showInline="true">
{choices}
  </Choices>
</View>
"""


def label_config(ties: bool = True) -> str:
    """The labelling configuration of a pairwise project.

    Parameters
    ----------
    ties : bool, default True
        Offer "Tie" beside "Left is better" and "Right is better".

    Returns
    -------
    str
        The configuration's XML: each side's prompt and response (``$first_prompt_text``,
        ``$first_text``, ``$second_prompt_text``, ``$second_text`` of the task data) and a
        required single choice named ``preference``.

    Examples
    --------
    >>> "Tie" in label_config(ties=False)
    False
    """
    offered = [value for value, vote in CHOICES.items() if ties or vote != tools.TIE]
    lines = "\n".join(f'    <Choice value="{value}"/>' for value in offered)
    return _CONFIG.format(name=CHOICE_NAME, choices=lines)


def label_studio_tasks(
    dataset: Dataset, pairs: Any, scores: Any | None = None
) -> list[dict[str, Any]]:
    """The Label Studio tasks of ``pairs``: ``{"data": record, "predictions": [{"model_version":
    "activerm-fast", "score": score, "result": []}]}`` with the record of
    :func:`~activerm_fast.data.annotation_tools.item_records` (the prediction has no result:
    the annotators see no suggested answer).

    Parameters
    ----------
    dataset : Dataset
        The dataset the pairs index, with response texts.
    pairs : array_like
        (k, 2) rows in the order they were chosen.
    scores : array_like, optional
        (k,) selection gains; without them the score falls with the rank.

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        As :func:`~activerm_fast.data.annotation_tools.item_records`.

    Examples
    --------
    >>> from activerm_fast.data import load
    >>> task = label_studio_tasks(load("arena-bench"), [[0, 20], [3, 41]])[1]
    >>> task["data"]["rank"], task["predictions"][0]["score"]
    (2, 0.5)
    """
    return [
        {
            "data": record,
            "predictions": [
                {"model_version": MODEL_VERSION, "score": record["score"], "result": []}
            ],
        }
        for record in tools.item_records(dataset, pairs, scores, tool="Label Studio")
    ]


def write_label_studio_tasks(
    dataset: Dataset, pairs: Any, path: str | os.PathLike[str], *, scores: Any | None = None
) -> int:
    """Write the tasks of ``pairs`` as a JSON file to import into a Label Studio project with
    the configuration :func:`label_config` (Import in the project's Data Manager).

    Parameters
    ----------
    dataset, pairs, scores
        As :func:`label_studio_tasks`.
    path : path
        The JSON file to write.

    Returns
    -------
    int
        The number of tasks written.

    Raises
    ------
    ValueError
        As :func:`label_studio_tasks`.

    Examples
    --------
    >>> import os, tempfile
    >>> from activerm_fast.data import load
    >>> path = os.path.join(tempfile.mkdtemp(), "tasks.json")
    >>> write_label_studio_tasks(load("arena-bench"), [[0, 20], [3, 41]], path)
    2
    """
    tasks = label_studio_tasks(dataset, pairs, scores)
    Path(path).write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(tasks)


@dataclass(frozen=True)
class PushSummary:
    """What a push did: the server ``url``, the ``project`` title and its ``project_id``, the
    tasks ``created`` and those ``already`` in the project (not sent again)."""

    url: str
    project: str
    project_id: int
    created: int
    already: int

    def line(self) -> str:
        """A one-line report."""
        return (
            f"Label Studio at {self.url}, project {self.project!r} (id {self.project_id}): "
            f"created {self.created} tasks, {self.already} already there"
        )


def push_label_studio(
    dataset: Dataset,
    pairs: Any,
    project: str,
    *,
    url: str | None = None,
    token: str | None = None,
    scores: Any | None = None,
    ties: bool = True,
    annotators: int = 1,
) -> PushSummary:
    """Create or update the project titled ``project`` on a running Label Studio and add one
    task per pair it does not hold yet.

    Parameters
    ----------
    dataset, pairs, scores
        As :func:`label_studio_tasks`.
    project : str
        The project's title; created with :func:`label_config` when no project has it,
        otherwise its configuration and number of annotators per task are set to these.
    url, token : str, optional
        The server (e.g. ``http://127.0.0.1:8080``) and an access token; default the
        environment variables ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.
    ties : bool, default True
        Offer "Tie" to the annotators.
    annotators : int, default 1
        How many annotators Label Studio asks for each task (its ``maximum_annotations``).

    Returns
    -------
    PushSummary

    Raises
    ------
    ValueError
        One line naming the URL or project: the server cannot be reached, refuses the token,
        or refuses the project or tasks; or as :func:`label_studio_tasks`.

    Examples
    --------
    >>> push_label_studio(data, batch, "reward pairs", url="http://127.0.0.1:8080",
    ...                   token="...")  # doctest: +SKIP
    """
    tasks = label_studio_tasks(dataset, pairs, scores)
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise ValueError(f"annotators must be a positive integer, got {annotators!r}")
    server = _Server(url, token)
    settings = {"label_config": label_config(ties), "maximum_annotations": annotators}
    found = server.find_project(project)
    if found is None:
        created = server.call("POST", "/api/projects", {"title": project, **settings})
        project_id = _project_id(created, server, project)
    else:
        project_id = _project_id(found, server, project)
        if any(found.get(key) != value for key, value in settings.items()):
            server.call("PATCH", f"/api/projects/{project_id}", settings)
    source = f"Label Studio at {server.url}, project {project!r}"
    tasks_there = _pairs_of_tasks(dataset, server.export(project_id), source)
    held = {pair.pair_id for pair in tasks_there}
    new = [task for task in tasks if task["data"]["pair_id"] not in held]
    for start in range(0, len(new), _CHUNK):
        server.call("POST", f"/api/projects/{project_id}/import", new[start : start + _CHUNK])
    return PushSummary(server.url, project, project_id, len(new), len(tasks) - len(new))


def pull_label_studio(
    dataset: Dataset,
    labelled: str | os.PathLike[str],
    *,
    project: str | None = None,
    url: str | None = None,
    token: str | None = None,
    export: str | os.PathLike[str] | None = None,
    held: str | os.PathLike[str] | None = None,
) -> tools.PullSummary:
    """Read a project's annotations and merge them into the labelled file ``select`` reads.

    Parameters
    ----------
    dataset : Dataset
        The dataset the pushed pairs index.
    labelled : path
        The labelled JSONL file (created when missing); decided pairs it lacks are appended.
    project : str, optional
        The project's title on the server (``url``, ``token`` as in :func:`push_label_studio`).
    export : path, optional
        Instead of a server: a JSON export of the project (Export, JSON, in the interface).
    held : path, optional
        The held file of ties, skipped and pending pairs; default ``<labelled>.held.jsonl``.

    Returns
    -------
    PullSummary
        What :func:`~activerm_fast.data.annotation_tools.merge_pull` made of the tasks'
        annotations.

    Raises
    ------
    ValueError
        One line: the server or project as in :func:`push_label_studio` (a missing project
        named); a malformed export or task, naming the task; a task pushed from another
        dataset; neither or both of ``project`` and ``export``.

    Examples
    --------
    >>> pull_label_studio(data, "labelled.jsonl", project="reward pairs",
    ...                   url="http://127.0.0.1:8080", token="...")  # doctest: +SKIP
    """
    if (project is None) == (export is None):
        raise ValueError("give either project (a server's project title) or export (a file)")
    if export is not None:
        tasks = json_document(export, "Label Studio export")
        source = str(export)
    else:
        assert project is not None
        server = _Server(url, token)
        found = server.find_project(project)
        if found is None:
            raise ValueError(f"Label Studio at {server.url} has no project {project!r}")
        tasks = server.export(_project_id(found, server, project))
        source = f"Label Studio at {server.url}, project {project!r}"
    return tools.merge_pull(dataset, _pairs_of_tasks(dataset, tasks, source), labelled, held)


def _pairs_of_tasks(dataset: Dataset, tasks: Any, source: str) -> Iterator[tools.ToolPair]:
    if not isinstance(tasks, list):
        raise ValueError(f"{source}: a Label Studio export is a JSON list of tasks")
    for position, task in enumerate(tasks):
        task_id = task.get("id") if isinstance(task, dict) else None
        where = (
            f"{source}: task {task_id}" if task_id is not None else f"{source}: task #{position}"
        )
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ValueError(f"{where}: a task is a JSON object with a 'data' object")
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            raise ValueError(f"{where}: 'annotations' must be a list")
        votes, skipped = _task_votes(annotations, where)
        yield tools.tool_pair(dataset, task["data"], votes, skipped=skipped, where=where)


def _task_votes(annotations: list[Any], where: str) -> tuple[list[str], int]:
    """Each annotator's vote from their latest annotation; cancelled or empty ones are skips."""
    latest: dict[Any, tuple[int, Any]] = {}
    for position, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise ValueError(f"{where}: annotation #{position} is not a JSON object")
        given = annotation.get("completed_by")
        who = given.get("id") if isinstance(given, dict) else given
        if who is not None and (isinstance(who, bool) or not isinstance(who, (int, str))):
            raise ValueError(
                f"{where}: annotation #{position} has completed_by {given!r:.80}; expected a "
                "user id or an object with one"
            )
        order = annotation.get("id", position)
        key = ("annotation", position) if who is None else who
        if isinstance(order, bool) or not isinstance(order, int):
            raise ValueError(f"{where}: annotation #{position} has id {order!r}")
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, annotation)
    votes, skipped = [], 0
    for order, annotation in latest.values():
        cancelled = annotation.get("was_cancelled", False)
        if not isinstance(cancelled, bool) and cancelled is not None:
            raise ValueError(
                f"{where}, annotation {order}: 'was_cancelled' must be true or false, got "
                f"{cancelled!r}"
            )
        vote = None if cancelled else _choice(annotation, order, where)
        if vote is None:
            skipped += 1
        else:
            votes.append(vote)
    return votes, skipped


def _choice(annotation: dict[str, Any], order: int, where: str) -> str | None:
    result = annotation.get("result", [])
    if not isinstance(result, list):
        raise ValueError(f"{where}, annotation {order}: 'result' must be a list")
    votes = []
    for region in result:
        if not isinstance(region, dict) or region.get("from_name") != CHOICE_NAME:
            continue
        value = region.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(chosen, list) or len(chosen) != 1 or chosen[0] not in CHOICES:
            raise ValueError(
                f"{where}, annotation {order}: {CHOICE_NAME!r} must be one of "
                f"{list(CHOICES)}, got {chosen!r}"
            )
        votes.append(chosen[0])
    if len(set(votes)) > 1:  # the first was counted, the others dropped
        raise ValueError(
            f"{where}, annotation {order}: {CHOICE_NAME!r} has several answers {votes}; an "
            "annotation gives one"
        )
    return CHOICES[votes[0]] if votes else None


def _project_id(project: Any, server: _Server, title: str) -> int:
    value = project.get("id") if isinstance(project, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Label Studio at {server.url}: project {title!r} came back without an id")
    return value


class _Server:
    """A Label Studio server's REST API, every failure one ValueError naming the URL."""

    def __init__(self, url: str | None, token: str | None, timeout: float = 120.0) -> None:
        url = url or os.environ.get(URL_VARIABLE)
        token = token or os.environ.get(TOKEN_VARIABLE)
        if not url:
            raise ValueError(f"no Label Studio URL: pass one or set {URL_VARIABLE}")
        if not token:
            raise ValueError(f"no Label Studio token: pass one or set {TOKEN_VARIABLE}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        if token.count(".") == 2:  # a personal access token (JWT): trade it for an access token
            access = self._request("POST", "/api/token/refresh", {"refresh": token}, {})
            if not isinstance(access, dict) or not isinstance(access.get("access"), str):
                raise ValueError(f"Label Studio at {self.url} gave no access token for the token")
            self.auth = f"Bearer {access['access']}"
        else:
            self.auth = f"Token {token}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self._request(method, path, body, {"Authorization": self.auth})

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project titled ``title``, None when there is none."""
        matches: list[dict[str, Any]] = []
        page = 1
        while True:
            query = urllib.parse.urlencode({"title": title, "page": page, "page_size": 100})
            answer = self.call("GET", f"/api/projects?{query}")
            results = answer.get("results") if isinstance(answer, dict) else answer
            if not isinstance(results, list):
                raise ValueError(f"Label Studio at {self.url}: /api/projects gave no project list")
            matches += [p for p in results if isinstance(p, dict) and p.get("title") == title]
            if not isinstance(answer, dict) or not answer.get("next"):
                break
            page += 1
        if len(matches) > 1:
            ids = sorted(str(p.get("id")) for p in matches)
            raise ValueError(
                f"Label Studio at {self.url} has {len(matches)} projects titled {title!r} "
                f"(ids {', '.join(ids)}): give one of them another title"
            )
        return matches[0] if matches else None

    def export(self, project_id: int) -> Any:
        """Every task of the project, with its annotations (the JSON export)."""
        query = urllib.parse.urlencode({"exportType": "JSON", "download_all_tasks": "true"})
        return self.call("GET", f"/api/projects/{project_id}/export?{query}")

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            detail = _detail(err.read().decode("utf-8", "replace"), self.url)
            if err.code in (401, 403):
                raise ValueError(
                    f"Label Studio at {self.url} refused the token ({detail})"
                ) from None
            raise ValueError(
                f"Label Studio at {self.url}: {method} {path.split('?')[0]} failed with HTTP "
                f"{err.code} ({detail})"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ValueError(f"cannot reach Label Studio at {self.url} ({reason})") from None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(
                f"{self.url}{path.split('?')[0]} did not answer JSON: is {self.url} a Label "
                "Studio server?"
            ) from None


def _detail(text: str, url: str) -> str:
    """The server's own reason in an error answer, on one line."""
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return f"not JSON: is {url} a Label Studio server?"
    if not isinstance(answer, dict):
        return " ".join(str(answer).split())[:300]
    reason = str(answer.get("detail", ""))
    if answer.get("validation_errors"):
        reason += f": {json.dumps(answer['validation_errors'], ensure_ascii=False)}"
    return " ".join(reason.split())[:300] or "no reason given"
