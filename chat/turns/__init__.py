"""One reply, end to end and without a socket: lifecycle (turn), speech relay (relay), database (store), audio."""

from chat.turns.turn import Turn, TurnOutput, TurnSpec

__all__ = ["Turn", "TurnOutput", "TurnSpec"]
