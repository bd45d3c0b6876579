"""VM and image life cycles on the simulator clock (``DispatchManager``/``LifeCycleManager``).

Each transition is a named step applied when due (``Sim.schedule``); with speed 0 every step is
applied before the request that caused it returns, so results are deterministic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors, leases, refs
from . import template as T

if TYPE_CHECKING:
    from .core import Sim
    from .perms import Caller

STATES = {
    0: "INIT",
    1: "PENDING",
    2: "HOLD",
    3: "ACTIVE",
    4: "STOPPED",
    5: "SUSPENDED",
    6: "DONE",
    8: "POWEROFF",
    9: "UNDEPLOYED",
    10: "CLONING",
    11: "CLONING_FAILURE",
}
LCM = {
    0: "LCM_INIT",
    1: "PROLOG",
    2: "BOOT",
    3: "RUNNING",
    5: "SAVE_STOP",
    6: "SAVE_SUSPEND",
    9: "PROLOG_RESUME",
    10: "EPILOG_STOP",
    11: "EPILOG",
    12: "SHUTDOWN",
    16: "UNKNOWN",
    17: "HOTPLUG",
    18: "SHUTDOWN_POWEROFF",
    20: "BOOT_POWEROFF",
    21: "BOOT_SUSPENDED",
    22: "BOOT_STOPPED",
    25: "HOTPLUG_NIC",
    26: "HOTPLUG_SAVEAS",
    27: "HOTPLUG_SAVEAS_POWEROFF",
    29: "SHUTDOWN_UNDEPLOY",
    30: "EPILOG_UNDEPLOY",
    31: "PROLOG_UNDEPLOY",
    32: "BOOT_UNDEPLOY",
    33: "HOTPLUG_PROLOG_POWEROFF",
    34: "HOTPLUG_EPILOG_POWEROFF",
    51: "DISK_SNAPSHOT_POWEROFF",
    54: "DISK_SNAPSHOT_SUSPENDED",
    57: "DISK_SNAPSHOT",
    65: "HOTPLUG_NIC_POWEROFF",
}
ACTIONS = {
    "undeploy": 5,
    "undeploy-hard": 6,
    "hold": 7,
    "release": 8,
    "stop": 9,
    "suspend": 10,
    "resume": 11,
    "reboot": 15,
    "reboot-hard": 16,
    "resched": 17,
    "unresched": 18,
    "poweroff": 19,
    "poweroff-hard": 20,
    "terminate": 27,
    "terminate-hard": 28,
}


def state_name(vm: dict) -> str:
    if vm["state"] == 3:
        return LCM.get(vm["lcm_state"], str(vm["lcm_state"]))
    return STATES.get(vm["state"], str(vm["state"]))


def _set(vm: dict, state: int, lcm: int = 0) -> None:
    vm["state"], vm["lcm_state"] = state, lcm


def _new_history(sim: Sim, vm: dict, prolog: bool) -> None:
    _end_record(sim, vm)
    now = sim.now()
    host = sim.store.get("host", 0)
    vm["history"].append(
        {
            "seq": len(vm["history"]),
            "hostname": host["name"] if host else "host01",
            "hid": 0,
            "stime": now,
            "etime": 0,
            "pstime": now if prolog else 0,
            "petime": 0,
            "rstime": 0 if prolog else now,
            "retime": 0,
            "estime": 0,
            "eetime": 0,
            "action": 0,
            "uid": -1,
            "gid": -1,
            "req": -1,
        }
    )


def _close_history(sim: Sim, vm: dict, code: int, caller: Caller, epilog: bool = False) -> None:
    """End the running period of the current record (RETIME); ETIME is set when the record
    is left for good (next record, or the VM leaves the host)."""
    if not vm["history"]:
        return
    h = vm["history"][-1]
    now = sim.now()
    if h["rstime"] and not h["retime"]:
        h["retime"] = now
    if epilog:
        h["estime"] = h["estime"] or now
    _mark(sim, vm, code, caller)


def _end_record(sim: Sim, vm: dict) -> None:
    if vm["history"] and not vm["history"][-1]["etime"]:
        vm["history"][-1]["etime"] = sim.now()


def close_cp_history(sim: Sim, vm: dict, code: int, caller: Caller | None) -> None:
    """DispatchManager::close_cp_history (hotplugs, resize): the current record ends now with
    the action `code`, and a copy on the same host goes on (seq + 1, its action the one the
    closed record had); a VM not running (powered off) stays so in the new record."""
    if not vm["history"]:
        return
    h, now = vm["history"][-1], sim.now()
    not_running = bool(h["retime"])
    h["retime"] = h["retime"] or now
    h["etime"] = now
    before = h["action"]
    _mark(sim, vm, code, caller)
    vm["history"].append(
        {
            **{k: 0 for k in ("pstime", "petime", "estime", "eetime", "etime")},
            "seq": h["seq"] + 1,
            "hostname": h["hostname"],
            "hid": h["hid"],
            "stime": now,
            "rstime": now,
            "retime": now if not_running else 0,
            "action": before,
            "uid": -1,
            "gid": -1,
            "req": -1,
        }
    )


def _mark(sim: Sim, vm: dict, code: int, caller: Caller | None) -> None:
    if vm["history"] and caller is not None:
        h = vm["history"][-1]
        h["action"], h["uid"], h["gid"] = code, caller.uid, caller.gid
        h["req"] = sim.next_request_id()


# ---------------------------------------------------------------------------- steps


def apply(sim: Sim, kind: str, obj: dict, step: str) -> None:
    if kind == "image":
        _image_step(sim, obj, step)
        return
    vm = obj
    now = sim.now()
    if step == "prolog":
        if vm["state"] != 1:
            return
        # PROLOG, or PROLOG_RESUME / PROLOG_UNDEPLOY when resuming a STOPPED / UNDEPLOYED VM
        _set(vm, 3, {4: 9, 9: 31}.get(vm.get("resume_from", 0), 1))
        _new_history(sim, vm, True)
        T.tset(vm["template"], "TM_MAD_SYSTEM", "dummy")
        for g in T.get_vec(vm["template"], "GRAPHICS"):
            if T.vget(g, "PORT") is None:
                T.vset(g, "PORT", str(5900 + vm["id"]))
        sim.schedule("vm", vm, "boot")
    elif step == "boot":
        vm["lcm_state"] = {4: 22, 9: 32}.get(vm.pop("resume_from", 0), 2)
        h = vm["history"][-1]
        h["petime"] = h["petime"] or now
        h["rstime"] = h["rstime"] or now
        vm["deploy_id"] = f"{h['hostname']}:{vm['name']}:dummy"
        sim.schedule("vm", vm, "running")
    elif step == "running":
        _set(vm, 3, 3)
    elif step == "epilog":
        vm["lcm_state"] = 11
        if vm["history"]:
            vm["history"][-1]["estime"] = vm["history"][-1]["estime"] or now
        sim.schedule("vm", vm, "done")
    elif step == "done":
        finish(sim, vm)
    elif step in ("poweroff", "stopped", "suspended", "undeployed"):
        _set(vm, {"poweroff": 8, "stopped": 4, "suspended": 5, "undeployed": 9}[step], 0)
        if step in ("stopped", "undeployed") and vm["history"]:
            vm["history"][-1]["eetime"] = now
            _end_record(sim, vm)
    elif step in ("epilog_stop", "epilog_undeploy"):
        vm["lcm_state"] = 10 if step == "epilog_stop" else 30
        if vm["history"]:
            vm["history"][-1]["estime"] = now
        sim.schedule("vm", vm, "stopped" if step == "epilog_stop" else "undeployed")
    elif step == "back":  # end of a hotplug/snapshot operation
        back = vm.pop("back", [3, 3])
        _set(vm, back[0], back[1])
        end_disk_hotplug(sim, vm)


def end_disk_hotplug(sim: Sim, vm: dict) -> None:
    """A disk attach or detach succeeded: the DISK marked ATTACH="YES" loses the mark
    (clear_attach_disk) or, detached, leaves the VM and releases its image."""
    detaching = vm.pop("detaching", False)
    for pair in list(vm["template"]):
        if pair[0] != "DISK" or T.vget(pair[1], "ATTACH") != "YES":
            continue
        if not detaching:
            pair[1][:] = [a for a in pair[1] if a[0] != "ATTACH"]
            continue
        vm["template"].remove(pair)
        if T.vget(pair[1], "IMAGE_ID") is not None:
            refs.release_image(sim, int(T.vget(pair[1], "IMAGE_ID")), vm["id"])


def finish(sim: Sim, vm: dict) -> None:
    """VM reaches DONE: leases, images and security groups are released."""
    now = sim.now()
    _set(vm, 6, 0)
    vm["etime"] = now
    vm["steps"] = []
    if vm["history"]:
        h = vm["history"][-1]
        h["etime"] = h["etime"] or now
        h["eetime"] = now if h["estime"] else h["eetime"]
    for nic in T.get_vec(vm["template"], "NIC"):
        vn = sim.store.get("vnet", int(T.vget(nic, "NETWORK_ID", "-1")))
        if vn is not None:
            leases.free_vm(vn, vm["id"])
            sim.store.put("vnet", vn)
    for disk in T.get_vec(vm["template"], "DISK"):
        if T.vget(disk, "IMAGE_ID") is not None:
            refs.release_image(sim, int(T.vget(disk, "IMAGE_ID")), vm["id"])
    from .methods import secgroup

    secgroup.release(sim, vm)


def _image_step(sim: Sim, img: dict, step: str) -> None:
    if step == "ready" and img["state"] in (4, 9, 10):
        refs.image_ready(img)
        T.remove(img["template"], "SAVE_AS_HOT")  # Image::clear_saving once saved
        img["source"] = img["source"] or "dummy_path"
        img["format"] = img["format"] or ("raw" if img["type"] == 2 else "dummy_format")
        if img.get("cloning_id", -1) >= 0:  # release_cloning_image on the source
            refs.release_clone(sim, img["cloning_id"], img["id"])
            img["cloning_id"] = -1
    elif step == "delete":
        sim.store.delete("image", img["id"])
        for ds in sim.store.all("datastore"):
            sim.store.invalidate("datastore", ds["id"])


# ---------------------------------------------------------------------------- actions


# *_FAILURE LCM states (include/VirtualMachine.h): terminate goes through CLEANUP_DELETE.
FAILURE_LCM_STATES = frozenset({14, 36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61})


def action(sim: Sim, caller: Caller, vm: dict, name: str) -> None:
    if name not in ACTIONS:
        raise errors.action(f'Action "{name}" is not supported')
    st, lcm = vm["state"], vm["lcm_state"]
    running = st == 3 and lcm == 3
    unknown = st == 3 and lcm == 16
    code = ACTIONS[name]

    def wrong() -> errors.OneError:
        return errors.action(
            f'Error performing action "{name}": This action is not available for state '
            + state_name(vm)
        )

    # a hard action cuts short the soft one in progress (DispatchManager: SHUTDOWN,
    # SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY accept the -hard variants)
    cutting_short = name.endswith("-hard") and st == 3 and lcm in (12, 18, 29)
    if cutting_short:
        vm["steps"] = []
    if name.startswith("terminate"):
        if st == 6:
            return
        if running or unknown or cutting_short:
            _set(vm, 3, 12)
            _close_history(sim, vm, code, caller, epilog=True)
            sim.schedule("vm", vm, "epilog")
        elif st in (4, 5, 8, 9):
            _set(vm, 3, 11)
            _mark(sim, vm, code, caller)
            if vm["history"]:
                h = vm["history"][-1]
                h["estime"] = sim.now()
            sim.schedule("vm", vm, "done")
        elif st in (0, 1, 2, 10, 11):
            vm["steps"] = []
            finish(sim, vm)
        elif st == 3 and lcm in FAILURE_LCM_STATES:  # oned: CLEANUP_DELETE, then DONE
            _set(vm, 3, 23)
            _mark(sim, vm, code, caller)
            sim.schedule("vm", vm, "done")
        else:
            raise errors.action(
                f'Error performing action "{name}": Could not terminate VM {vm["id"]}, wrong '
                f"state {state_name(vm)}."
            )
    elif name.startswith("poweroff"):
        if not (running or unknown or (cutting_short and lcm == 18)):
            raise wrong()
        _set(vm, 3, 18)
        _close_history(sim, vm, code, caller)
        sim.schedule("vm", vm, "poweroff")
    elif name == "resume":
        if st == 8 or unknown:
            # LifeCycleManager::trigger_restart: BOOT_UNKNOWN from UNKNOWN, else BOOT_POWEROFF
            _set(vm, 3, 19 if unknown else 20)
            _new_history(sim, vm, False)
            sim.schedule("vm", vm, "running")
        elif st == 5:
            _set(vm, 3, 21)
            _mark(sim, vm, code, caller)
            sim.schedule("vm", vm, "running")
        elif st in (4, 9):
            vm["resume_from"] = st
            _set(vm, 1, 0)
            sim.schedule("vm", vm, "prolog")
        else:
            raise wrong()
    elif name.startswith("reboot"):
        if not running:
            raise wrong()
        _mark(sim, vm, code, caller)
    elif name == "stop":
        if running:
            _set(vm, 3, 5)
            _close_history(sim, vm, code, caller)
            sim.schedule("vm", vm, "epilog_stop")
        elif st == 5:
            _close_history(sim, vm, code, caller)
            sim.schedule("vm", vm, "epilog_stop", 0)
        else:
            raise wrong()
    elif name == "suspend":
        if not running:
            raise wrong()
        _set(vm, 3, 6)
        _mark(sim, vm, code, caller)
        sim.schedule("vm", vm, "suspended")
    elif name.startswith("undeploy"):
        if running or unknown:
            _set(vm, 3, 29)
            _close_history(sim, vm, code, caller)
            sim.schedule("vm", vm, "epilog_undeploy")
        elif st == 8:
            _close_history(sim, vm, code, caller)
            sim.schedule("vm", vm, "epilog_undeploy", 0)
        else:
            raise wrong()
    elif name == "hold":
        if st != 1:
            raise wrong()
        vm["steps"] = []
        _set(vm, 2, 0)
    elif name == "release":
        if st != 2:
            raise wrong()
        _set(vm, 1, 0)
        sim.schedule("vm", vm, "prolog")
    elif name in ("resched", "unresched"):
        if not running:
            raise wrong()
        vm["resched"] = 1 if name == "resched" else 0


HOTPLUG_ERRORS = {
    "disk_attach": "Could not attach a new disk to VM {vid}, wrong state {state}.",
    "disk_detach": "Could not detach disk from VM {vid}, wrong state {state}.",
    "nic_attach": "Could not add a new NIC to VM {vid}, wrong state {state}.",
    "nic_detach": "Could not detach NIC from VM {vid}, wrong state {state}.",
    "snapshot": "Could not create a new snapshot for VM {vid}, wrong state {state}.",
    "saveas": "VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
}
# operation -> LCM state entered from RUNNING / POWEROFF / SUSPENDED (None: not allowed)
HOTPLUG_LCM = {
    "disk_attach": (17, 33, None),
    "disk_detach": (17, 34, None),
    "nic_attach": (25, 65, None),
    "nic_detach": (25, 65, None),
    "snapshot": (57, 51, 54),
    "saveas": (26, 27, 28),
}
# operation -> {STATE: LCM state} entered from other states; operations whose wrong-state
# refusal is INTERNAL, not ACTION (VirtualMachine::set_saveas_state)
HOTPLUG_MORE = {"saveas": {9: 67, 4: 68}}  # UNDEPLOYED, STOPPED
# operation -> the VMActions code its history record is closed with (close_cp_history); a
# disk save does not close one
HOTPLUG_ACTION = {
    "disk_attach": 21,  # VMActions::DISK_ATTACH_ACTION
    "disk_detach": 22,
    "nic_attach": 23,
    "nic_detach": 24,
    "snapshot": 25,  # DISK_SNAPSHOT_CREATE_ACTION
}
RESIZE_ACTION = 35
HOTPLUG_INTERNAL = frozenset({"saveas"})


SAVEAS_LCM = frozenset({26, 27, 28, 67, 68})  # HOTPLUG_SAVEAS*


def clear_saveas(vm: dict) -> None:
    """VirtualMachine::clear_saveas_state: back to the state the save started from, now."""
    if vm["state"] == 3 and vm["lcm_state"] in SAVEAS_LCM:
        back = vm.pop("back", [3, 3])
        _set(vm, back[0], back[1])
        vm["steps"] = [s for s in vm.get("steps", []) if s[1] != "back"]


def hotplug(sim: Sim, vm: dict, op: str, check: bool = False, caller: Caller | None = None) -> None:
    """Enter the hotplug LCM state of ``op`` for one step (see ``HOTPLUG_LCM``), the VM's
    history record closed with the operation (``HOTPLUG_ACTION``) as by ``caller``.
    With ``check`` only verify that the VM is in a state that allows it."""
    st, lcm = vm["state"], vm["lcm_state"]
    running, poweroff, suspended = HOTPLUG_LCM[op]
    if st == 3 and lcm == 3:
        nxt, back = running, [3, 3]
    elif st == 8:
        nxt, back = poweroff, [8, 0]
    elif st == 5 and suspended is not None:
        nxt, back = suspended, [5, 0]
    elif st in HOTPLUG_MORE.get(op, {}):
        nxt, back = HOTPLUG_MORE[op][st], [st, 0]
    else:
        refuse = errors.internal if op in HOTPLUG_INTERNAL else errors.action
        raise refuse(HOTPLUG_ERRORS[op].format(vid=vm["id"], state=state_name(vm)))
    if check:
        return
    vm["back"] = back
    _set(vm, 3, nxt)
    if op in HOTPLUG_ACTION:
        close_cp_history(sim, vm, HOTPLUG_ACTION[op], caller)
    sim.schedule("vm", vm, "back")
