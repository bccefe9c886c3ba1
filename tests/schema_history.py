"""Every earlier schema, written out in plain SQL per database, to test upgrades.

Version 0.0 had only subscriptions, 1.0 added the version table, 2.0 the
``auth`` column, 3.0 the event log, 4.0 the attempt counts, 5.0 duplicate keys and due times,
6.0 an index on when subscriptions changed, and 7.0 delivery modes and signing secrets.
Each builder creates exactly the
tables of its version and fills them with rows an upgrade must keep.
"""

from __future__ import annotations

from peewee import MySQLDatabase, PostgresqlDatabase

TYPES = {
    'sqlite': {'uuid': 'TEXT', 'dt': 'DATETIME', 'q': '"'},
    'postgres': {'uuid': 'UUID', 'dt': 'TIMESTAMP', 'q': '"'},
    'mysql': {'uuid': 'VARCHAR(40)', 'dt': 'DATETIME', 'q': '`'},
}

EVENTMATCH_0 = """CREATE TABLE eventmatch (
    uuid {uuid} NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, jsonpath TEXT NOT NULL,
    {q}user{q} VARCHAR(255) NOT NULL, target_url TEXT NOT NULL, extensions TEXT NOT NULL,
    version VARCHAR(255) NOT NULL, error TEXT, disabled {dt}, created {dt} NOT NULL,
    updated {dt} NOT NULL, deleted {dt})"""
VERSION_TABLE = """CREATE TABLE notificationsystem (
    part VARCHAR(16) NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"""
AUTH_COLUMN = 'ALTER TABLE eventmatch ADD COLUMN auth TEXT'
EVENTLOG_3 = """CREATE TABLE eventlog (
    uuid {uuid} NOT NULL PRIMARY KEY, jsondata TEXT NOT NULL, created {dt} NOT NULL)"""
EVENTLOGMATCH_3 = """CREATE TABLE eventlogmatch (
    uuid {uuid} NOT NULL PRIMARY KEY,
    event_log_id {uuid} NOT NULL REFERENCES eventlog (uuid),
    event_match_id {uuid} NOT NULL REFERENCES eventmatch (uuid),
    policy_status_code TEXT, policy_resp_body TEXT, target_status_code TEXT,
    target_resp_body TEXT, created {dt} NOT NULL)"""

SUBSCRIPTIONS = [
    (
        '466725b0-cbe1-45cd-b034-c3209aa4b6e0',
        'My Event Match',
        'data',
        'dmlb2001',
        'http://www.example.com/receive',
        '{}',
        'v0.1',
        None,
        None,
        '2018-08-02 13:53:05',
        '2018-08-02 13:53:05',
        None,
    ),
    (
        '0a2c9f3e-5f43-4b5e-9a55-2c1e7b0d9c11',
        'Other',
        '$.data[*]',
        'someone',
        'http://127.0.0.1:9/x',
        '{"k": "v"}',
        'v0.1',
        'gone',
        '2019-01-01 00:00:00',
        '2018-09-01 10:00:00',
        '2018-09-02 10:00:00',
        None,
    ),
]
EVENTS = [('7b0d1c4e-0f6a-4a7e-8c1f-0d6f2c0b4a10', '{"eventID": "a", "data": []}', '2020-02-29 20:44:17')]
ATTEMPTS_4 = [
    'ALTER TABLE eventlogmatch ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE eventlogmatch ADD COLUMN last_attempt {dt}',
    'CREATE UNIQUE INDEX eventlogmatch_pair ON eventlogmatch (event_log_id, event_match_id)',
]
DUE_5 = [
    'ALTER TABLE eventlog ADD COLUMN dedup_key VARCHAR(64)',
    'ALTER TABLE eventlog ADD COLUMN retry_at {dt}',
    'CREATE UNIQUE INDEX eventlog_dedup ON eventlog (dedup_key)',
    'ALTER TABLE eventlogmatch ADD COLUMN retry_at {dt}',
]
CHANGES_6 = ['CREATE INDEX eventmatch_changed ON eventmatch (updated)']
SIGNING_7 = [
    "ALTER TABLE eventmatch ADD COLUMN delivery_mode VARCHAR(16) NOT NULL DEFAULT 'structured'",
    'ALTER TABLE eventmatch ADD COLUMN signing_secret TEXT',
    'ALTER TABLE eventmatch ADD COLUMN previous_secret TEXT',
    'ALTER TABLE eventmatch ADD COLUMN previous_secret_until {dt}',
]
#: The secret each subscription has at 7.0 (one per subscription, in order).
SECRETS_7 = ['whsec_' + 'A' * 43 + '=', 'whsec_' + 'B' * 43 + '=']
MATCHES = [
    (
        '1791be8f-d9cc-418c-b976-b2a747b58678',
        '7b0d1c4e-0f6a-4a7e-8c1f-0d6f2c0b4a10',
        '466725b0-cbe1-45cd-b034-c3209aa4b6e0',
        '200',
        '{"status": "success"}',
        '200',
        'ok',
        '2020-02-29 20:44:18',
    )
]


def dialect(db) -> str:
    """Name the dialect of a peewee database."""
    if isinstance(db, PostgresqlDatabase):
        return 'postgres'
    if isinstance(db, MySQLDatabase):
        return 'mysql'
    return 'sqlite'


def build(db, version: tuple[int, int]) -> None:
    """Create the schema of ``version`` in an empty database, with rows in it."""
    types = TYPES[dialect(db)]
    param = '%s' if dialect(db) != 'sqlite' else '?'

    def insert(table: str, rows: list[tuple]) -> None:
        marks = ', '.join([param] * len(rows[0]))
        for row in rows:
            db.execute_sql(f'INSERT INTO {table} VALUES ({marks})', row)

    db.execute_sql(EVENTMATCH_0.format(**types))
    insert('eventmatch', SUBSCRIPTIONS)
    if version >= (1, 0):
        db.execute_sql(VERSION_TABLE)
        insert('notificationsystem', [('major', version[0]), ('minor', version[1])])
    if version >= (2, 0):
        db.execute_sql(AUTH_COLUMN)
        db.execute_sql("UPDATE eventmatch SET auth = '{}'")
    if version >= (3, 0):
        db.execute_sql(EVENTLOG_3.format(**types))
        db.execute_sql(EVENTLOGMATCH_3.format(**types))
        insert('eventlog', EVENTS)
        insert('eventlogmatch', MATCHES)
    for since, statements in (((4, 0), ATTEMPTS_4), ((5, 0), DUE_5), ((6, 0), CHANGES_6), ((7, 0), SIGNING_7)):
        if version >= since:
            for statement in statements:
                db.execute_sql(statement.format(**types))
    if version >= (7, 0):
        for sub, secret in zip(SUBSCRIPTIONS, SECRETS_7):
            db.execute_sql(f'UPDATE eventmatch SET signing_secret = {param} WHERE uuid = {param}', (secret, sub[0]))
