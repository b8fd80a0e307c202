-- Slack posts whose outcome may be unknown. chat.postMessage has no idempotency key: when an
-- attempt's answer is lost (a timeout, a 5xx, a crash before the answer was recorded), Slack
-- may or may not have posted. A row here says "an attempt under this key was made at
-- attempted_at"; the next attempt first looks for the message in the conversation's history
-- (every post carries its key in the message metadata) and posts only when it is not there.
-- The row is removed once the post is recorded (slack_messages / slack_sent) or when Slack
-- refused the attempt outright.
CREATE TABLE slack_post_attempts (
    post_key      TEXT   PRIMARY KEY,
    channel       TEXT   NOT NULL,
    attempted_at  BIGINT NOT NULL
);
