-- Push rules (user-defined ones, and changes to server-default rules) and pushers.

CREATE TABLE push_rules (
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    position   INTEGER NOT NULL,
    rule       TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

CREATE TABLE push_rule_overrides (
    user_id  TEXT NOT NULL,
    rule_id  TEXT NOT NULL,
    enabled  {{bool}},
    actions  TEXT,
    PRIMARY KEY (user_id, rule_id)
);

CREATE TABLE pushers (
    user_id              TEXT NOT NULL,
    app_id               TEXT NOT NULL,
    pushkey              TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    app_display_name     TEXT NOT NULL,
    device_display_name  TEXT NOT NULL,
    profile_tag          TEXT,
    lang                 TEXT NOT NULL,
    data                 TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    created_ts           BIGINT NOT NULL,
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_user ON pushers (user_id);
