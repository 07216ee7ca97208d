"""The scorer: every viewer's tier, the room facts and the follow-up queue, kept in real time."""
