"""A LIBERO task's goal as subgoals: parsed from `parsed_problem['goal_state']`, classified and
evaluated.

A goal_state is a list of predicates, each a list `[predicate, arg, ...]` (BDDL's `(:goal (And
(In a r) (On b c)))` after bddl's parser); a nested `["and", ...]` is flattened. The kinds:
  placement    In / On: move args[0] into / onto args[1] (an object or an object's region)
  articulated  Open / Close / TurnOn / TurnOff: operate args[0] (a drawer, microwave, stove, ...)
  other        anything else (Up, Stack, ...): not handled by the scripted policy
"""

import dataclasses

PLACEMENT = "placement"
ARTICULATED = "articulated"
OTHER = "other"
KINDS = {"in": PLACEMENT, "on": PLACEMENT, "open": ARTICULATED, "close": ARTICULATED,
         "turnon": ARTICULATED, "turnoff": ARTICULATED}


@dataclasses.dataclass(frozen=True)
class Subgoal:
  """One predicate of a goal: its lower-case name, its arguments and its kind."""
  predicate: str
  args: tuple

  @property
  def kind(self):
    """PLACEMENT, ARTICULATED or OTHER."""
    return KINDS.get(self.predicate, OTHER)

  @property
  def obj(self):
    """The object the subgoal moves or operates (its first argument)."""
    return self.args[0]

  @property
  def target(self):
    """Where a placement puts its object (the second argument); None for other kinds."""
    return self.args[1] if self.kind == PLACEMENT and len(self.args) > 1 else None

  def as_list(self):
    """The predicate as LIBERO's `_eval_predicate` takes it: [name, *args]."""
    return [self.predicate, *self.args]


def parse_goal(goal_state):
  """[Subgoal] of a goal_state list, in order, conjunctions flattened."""
  subgoals = []
  for item in goal_state:
    if isinstance(item, str):
      raise ValueError(f"goal_state entries must be predicate lists, got {item!r}")
    name, *args = item
    name = str(name).lower()
    if name == "and":
      subgoals += parse_goal(args)
    else:
      subgoals.append(Subgoal(name, tuple(str(a) for a in args)))
  return subgoals


def placements_only(subgoals):
  """Whether every subgoal is an In / On placement (what the scripted policy solves)."""
  return bool(subgoals) and all(s.kind == PLACEMENT for s in subgoals)


def evaluate(subgoals, eval_predicate):
  """[bool] per subgoal, from a LIBERO env's `_eval_predicate` (or any callable of the list)."""
  return [bool(eval_predicate(s.as_list())) for s in subgoals]


def env_subgoals(problem_env):
  """The subgoals of a LIBERO problem env (the robosuite env under the gym-style wrapper)."""
  return parse_goal(problem_env.parsed_problem["goal_state"])
