"""The app's words in English and Simplified Chinese: one table, ``t(key, lang, **params)``.

Strings are ``str.format`` templates whose parameters are numbers or words
from this table, never viewer text: pages put viewer text on screen with
``st.text`` on its own.  English rule help comes from the rules table
(``fanops.rules_settings.RULES``), the one source of truth for it.
"""

from __future__ import annotations

from typing import Any

from fanops.i18n_fans import FANS
from fanops.rules_settings import RULES

LANGS: tuple[str, ...] = ("en", "zh-Hans")
LANG_NAMES: dict[str, str] = {"en": "English", "zh-Hans": "简体中文"}

_RUN = "python3 dev.py up"

TABLE: dict[str, dict[str, str]] = {
    # navigation and sidebar
    "nav.live": {"en": "Live board", "zh-Hans": "直播看板"},
    "nav.host": {"en": "Host screen", "zh-Hans": "主播提词屏"},
    "nav.queue": {"en": "Follow-up queue", "zh-Hans": "私信跟进"},
    "nav.settings": {"en": "Settings", "zh-Hans": "设置"},
    "nav.review": {"en": "Post-show review", "zh-Hans": "直播复盘"},
    "sidebar.shop": {"en": "Shop", "zh-Hans": "店铺"},
    "sidebar.room": {"en": "Room", "zh-Hans": "直播间"},
    "sidebar.room_auto": {"en": "● The room live now", "zh-Hans": "● 当前正在直播的场次"},
    "sidebar.live": {"en": "live", "zh-Hans": "直播中"},
    "sidebar.operator": {"en": "Your name (shown to other operators)", "zh-Hans": "你的名字（其他运营可见）"},
    "sidebar.operator_hint": {"en": "e.g. Mei", "zh-Hans": "例如：小美"},
    # sign-in (screens/access.py)
    "access.title": {"en": "Sign in", "zh-Hans": "登录"},
    "access.name": {"en": "Your name (shown to other operators)", "zh-Hans": "你的名字（其他运营可见）"},
    "access.password": {"en": "Password", "zh-Hans": "密码"},
    "access.sign_in": {"en": "Sign in", "zh-Hans": "登录"},
    "access.sign_out": {"en": "Sign out", "zh-Hans": "退出登录"},
    "access.need_name": {"en": "Enter your name: it is shown on the tasks you claim.",
                         "zh-Hans": "请填写名字：它会显示在你认领的任务上。"},
    "access.wrong": {"en": "Wrong password.", "zh-Hans": "密码错误。"},
    "access.locked": {"en": "Too many wrong passwords from this address: try again in {s} s.",
                      "zh-Hans": "此地址密码错误次数过多：请 {s} 秒后再试。"},
    "access.as": {"en": "Signed in as {role}:", "zh-Hans": "已登录（{role}）："},
    "access.role.operator": {"en": "operator", "zh-Hans": "运营"},
    "access.role.admin": {"en": "admin", "zh-Hans": "管理员"},
    "access.closed": {"en": "This screen is not open to you.", "zh-Hans": "你无权打开此页面。"},
    "access.oidc": {"en": "Sign in with your company account", "zh-Hans": "使用公司账号登录"},
    "access.not_listed": {"en": "This account is not on the allow-list of this app.",
                          "zh-Hans": "此账号不在本应用的允许名单中。"},
    "all": {"en": "All", "zh-Hans": "全部"},
    "err.redis": {"en": "Redis unreachable since {at} ({ago}; {reason}); retrying on every refresh.",
                  "zh-Hans": "自 {at} 起无法连接 Redis（{ago}；{reason}），每次刷新时重试。"},
    "err.redis_full": {"en": "Redis is full since {at} ({ago}): nothing can be saved until memory frees "
                             "(raise its maxmemory); retrying on every refresh.",
                       "zh-Hans": "自 {at} 起 Redis 内存已满（{ago}）：内存释放前无法保存（请调高 maxmemory），"
                                  "每次刷新时重试。"},
    "empty.no_room": {"en": "No room yet. Start the simulated live room (and everything else) with:",
                      "zh-Hans": "还没有直播间数据。用下面的命令启动模拟直播间（以及全部服务）："},
    "empty.no_room_feed": {"en": "Or read your own feed into Redis:", "zh-Hans": "或者接入你自己的直播数据流："},
    # units
    "unit.s": {"en": "{n} s", "zh-Hans": "{n} 秒"},
    "unit.min": {"en": "{n} min", "zh-Hans": "{n} 分钟"},
    "unit.h": {"en": "{n} h", "zh-Hans": "{n} 小时"},
    "unit.d": {"en": "{n} d", "zh-Hans": "{n} 天"},
    # tiers, states, transitions
    "tier.new_fan": {"en": "New fan", "zh-Hans": "新粉"},
    "tier.first_buyer": {"en": "First buyer", "zh-Hans": "首单客"},
    "tier.active": {"en": "Active", "zh-Hans": "活跃粉"},
    "tier.dormant": {"en": "Dormant", "zh-Hans": "沉睡粉"},
    "tier.unknown": {"en": "Unknown tier", "zh-Hans": "未知层级"},
    "state.unknown": {"en": "Unknown state", "zh-Hans": "未知状态"},
    "state.open": {"en": "Open", "zh-Hans": "待办"},
    "state.pending": {"en": "Pending", "zh-Hans": "待认领"},
    "state.claimed": {"en": "Claimed", "zh-Hans": "已认领"},
    "state.sent": {"en": "Sent", "zh-Hans": "已发送"},
    "state.skipped": {"en": "Skipped", "zh-Hans": "已跳过"},
    "state.converted": {"en": "Converted", "zh-Hans": "已自然成交"},
    "state.withdrawn": {"en": "Withdrawn", "zh-Hans": "已撤回"},
    "state.expired": {"en": "Expired", "zh-Hans": "已过期"},
    "change.first_order": {"en": "New fan → first buyer", "zh-Hans": "新粉 → 首单客"},
    "change.back": {"en": "Dormant → back", "zh-Hans": "沉睡粉 → 回归"},
    "change.active": {"en": "→ Active", "zh-Hans": "→ 活跃粉"},
    "col.time": {"en": "Time", "zh-Hans": "时间"},
    "col.name": {"en": "Name", "zh-Hans": "昵称"},
    "col.change": {"en": "Change", "zh-Hans": "变化"},
    "col.tier": {"en": "Tier", "zh-Hans": "层级"},
    "col.today": {"en": "Today", "zh-Hans": "当前"},
    "col.new": {"en": "New thresholds", "zh-Hans": "新阈值"},
    "col.diff": {"en": "Difference", "zh-Hans": "差值"},
    # live board
    "live.title": {"en": "Live board", "zh-Hans": "直播看板"},
    "live.room": {"en": "Room:", "zh-Hans": "直播间："},
    "live.is_live": {"en": "Live", "zh-Hans": "直播中"},
    "live.ended": {"en": "Last event {ago} ago", "zh-Hans": "最后事件：{ago}前"},
    "live.not_live": {"en": "No room is live now; this is the most recent one. Start the simulated room with:",
                      "zh-Hans": "当前没有正在直播的场次，下面是最近一场。用下面的命令启动模拟直播间："},
    "live.present": {"en": "Viewers present", "zh-Hans": "在线观众"},
    "live.unique": {"en": "Unique viewers", "zh-Hans": "累计观众"},
    "live.new": {"en": "New viewers", "zh-Hans": "新观众"},
    "live.orders": {"en": "Orders", "zh-Hans": "订单"},
    "live.buyers": {"en": "Buyers", "zh-Hans": "下单人数"},
    "live.conversion": {"en": "Conversion", "zh-Hans": "转化率"},
    "live.conversion_help": {"en": "Buyers / unique viewers", "zh-Hans": "下单人数 / 累计观众"},
    "live.events_s": {"en": "Events/s", "zh-Hans": "事件/秒"},
    "live.gmv": {"en": "GMV {cur}", "zh-Hans": "成交额 {cur}"},
    "live.tiers": {"en": "Fan tiers", "zh-Hans": "粉丝层级"},
    "live.tiers_room": {"en": "This room's viewers", "zh-Hans": "本场观众"},
    "live.tiers_shop": {"en": "Whole shop", "zh-Hans": "全店"},
    "live.change_span": {"en": "Arrows: change over the last {span}.", "zh-Hans": "箭头：最近 {span} 的变化。"},
    "live.change_none": {"en": "The change over 5 minutes shows once the board has been open 30 s.",
                         "zh-Hans": "看板打开 30 秒后显示 5 分钟内的变化。"},
    "live.chart": {"en": "Viewers present and orders per minute", "zh-Hans": "每分钟在线观众与订单"},
    "live.chart_present": {"en": "Viewers present", "zh-Hans": "在线观众"},
    "live.chart_orders": {"en": "Orders per minute", "zh-Hans": "每分钟订单"},
    "live.chart_empty": {"en": "No events in this room yet.", "zh-Hans": "本场还没有事件。"},
    "live.chart_present_note": {"en": "Viewers present are counted as events arrive: a gap is a minute "
                                      "with no event in the room.",
                                "zh-Hans": "在线观众随事件到达时统计，空缺处表示该分钟本场没有事件。"},
    "live.transitions": {"en": "Fans moving up", "zh-Hans": "粉丝升级动态"},
    "live.transitions_empty": {"en": "No first orders, comebacks or new active fans in this room yet.",
                               "zh-Hans": "本场还没有首单、回归或新晋活跃粉。"},
    "live.health": {"en": "Pipeline health", "zh-Hans": "数据管道状态"},
    "health.consumer": {"en": "Feed reader", "zh-Hans": "数据接入"},
    "health.connected": {"en": "Connected", "zh-Hans": "已连接"},
    "health.not_connected": {"en": "Not connected", "zh-Hans": "未连接"},
    "health.lag": {"en": "Scorer lag (events)", "zh-Hans": "打分积压（事件）"},
    "health.lag_help": {"en": "Events received but not yet applied; 0 means the board is up to date.",
                        "zh-Hans": "已接收但尚未处理的事件数；0 表示看板数据是最新的。"},
    "health.scorers": {"en": "Scorers running", "zh-Hans": "打分进程"},
    "health.dead_minute": {"en": "Bad events (last min)", "zh-Hans": "异常事件（近 1 分钟）"},
    "health.ok": {"en": "All good: the feed is flowing and the scorer keeps up.",
                  "zh-Hans": "一切正常：数据在流入，打分跟得上。"},
    "health.no_consumer": {"en": f"No feed reader is running: nothing new will arrive. Start everything with "
                                 f"`{_RUN}`, or `python -m realtime consume --url WS_URL`.",
                           "zh-Hans": f"没有运行中的数据接入进程，不会有新数据。用 `{_RUN}` 启动全部服务，"
                                      f"或运行 `python -m realtime consume --url WS_URL`。"},
    "health.disconnected": {"en": "The feed reader is not connected to the feed; it keeps retrying.",
                            "zh-Hans": "数据接入进程没有连上数据流，正在自动重试。"},
    "health.silent": {"en": "The feed has sent nothing for {s} s. Is the show still on?",
                      "zh-Hans": "数据流已经 {s} 秒没有新数据。直播还在进行吗？"},
    "health.no_scorer": {"en": "No scorer is running: {lag} events wait. Start one with `python -m scoring run`.",
                         "zh-Hans": "没有运行中的打分进程：{lag} 个事件在等待。用 `python -m scoring run` 启动。"},
    "health.lag_growing": {"en": "The scorer is falling behind ({lag} events waiting, and growing): "
                                 "start another with `python -m scoring run`.",
                           "zh-Hans": "打分进程跟不上（{lag} 个事件在等待且在增加）："
                                      "用 `python -m scoring run` 再启动一个。"},
    "health.redis_full": {"en": "Redis is full ({used} MB of its {limit} MB maxmemory): nothing new is applied. "
                                "The feed reader holds what it has read and the scorers wait; nothing is lost. "
                                "Raise maxmemory (redis-cli CONFIG SET maxmemory ...): everything goes on by itself.",
                          "zh-Hans": "Redis 内存已满（{used} MB，上限 maxmemory {limit} MB）：新数据暂停处理。"
                                     "数据接入进程保留已读到的数据，打分进程在等待，不会丢数据。"
                                     "请调高 maxmemory（redis-cli CONFIG SET maxmemory ...），之后会自动继续。"},
    "health.redis_nearly_full": {"en": "Redis is {pct}% full ({used} MB of its {limit} MB maxmemory): when it is "
                                       "full, nothing new is applied until memory frees. Raise maxmemory soon, or "
                                       "archive ended shows now (`python -m scoring close-room`).",
                                 "zh-Hans": "Redis 内存已用 {pct}%（{used} MB，上限 {limit} MB）：满了之后新数据会暂停"
                                            "处理，直到内存释放。请尽快调高 maxmemory，或现在归档已结束的直播"
                                            "（`python -m scoring close-room`）。"},
    "health.dead": {"en": "{n} bad events in the last minute: the feed sends malformed data.",
                    "zh-Hans": "近 1 分钟有 {n} 个异常事件：数据流格式有问题。"},
    # the TikTok LIVE tile (issue 15)
    "tiktok.title": {"en": "TikTok LIVE @{user}", "zh-Hans": "TikTok 直播 @{user}"},
    "tiktok.viewers": {"en": "Watching now", "zh-Hans": "当前观看"},
    "tiktok.viewers_total": {"en": "Viewers so far", "zh-Hans": "累计观看"},
    "tiktok.last_error": {"en": "Last error, {ago} ago:", "zh-Hans": "最近一次错误（{ago}前）："},
    "tiktok.state.starting": {"en": "Starting", "zh-Hans": "启动中"},
    "tiktok.state.connecting": {"en": "Connecting", "zh-Hans": "连接中"},
    "tiktok.state.connected": {"en": "Connected", "zh-Hans": "已连接"},
    "tiktok.state.offline": {"en": "Not live", "zh-Hans": "未开播"},
    "tiktok.state.ended": {"en": "Live ended", "zh-Hans": "直播已结束"},
    "tiktok.state.rate_limited": {"en": "Sign server rate limit", "zh-Hans": "签名服务限流"},
    "tiktok.state.sign_error": {"en": "Sign server error", "zh-Hans": "签名服务出错"},
    "tiktok.state.blocked": {"en": "Blocked by TikTok", "zh-Hans": "被 TikTok 拦截"},
    "tiktok.state.not_found": {"en": "Account not found", "zh-Hans": "找不到账号"},
    "tiktok.state.dropped": {"en": "Reconnecting", "zh-Hans": "重连中"},
    "tiktok.state.error": {"en": "Error, retrying", "zh-Hans": "出错，重试中"},
    "tiktok.state.stopped": {"en": "Stopped", "zh-Hans": "已停止"},
    "tiktok.state.unknown": {"en": "Unknown", "zh-Hans": "未知"},
    # host screen
    "host.viewers": {"en": "Viewers now", "zh-Hans": "在线观众"},
    "host.orders": {"en": "Orders this show", "zh-Hans": "本场订单"},
    "host.greet": {"en": "Say hi to", "zh-Hans": "欢迎老粉"},
    "host.thank": {"en": "Thank", "zh-Hans": "感谢下单"},
    "host.questions": {"en": "Answer", "zh-Hans": "回答提问"},
    "host.vip": {"en": "VIP fan", "zh-Hans": "VIP 粉丝"},
    "host.back": {"en": "back again", "zh-Hans": "老粉回来了"},
    "host.first": {"en": "first order!", "zh-Hans": "首单！"},
    "host.no_name": {"en": "(no name)", "zh-Hans": "（无昵称）"},
    "host.none_yet": {"en": "nobody right now", "zh-Hans": "暂时没有"},
    "host.no_room": {"en": "No room live", "zh-Hans": "没有正在直播的场次"},
    "host.no_room_how": {"en": "Start the simulated room with: {cmd}", "zh-Hans": "用这个命令启动模拟直播间：{cmd}"},
    "host.ended": {"en": "Show ended {ago} ago", "zh-Hans": "直播已结束 {ago}"},
    # follow-up queue
    "queue.title": {"en": "Follow-up queue", "zh-Hans": "私信跟进队列"},
    "queue.state": {"en": "State", "zh-Hans": "状态"},
    "queue.tier": {"en": "Tier", "zh-Hans": "层级"},
    "queue.lang": {"en": "Language", "zh-Hans": "语言"},
    "queue.sendable": {"en": "Sendable now", "zh-Hans": "现在可发"},
    "queue.sendable_help": {"en": "Only tasks where it is a decent hour for the viewer now.",
                            "zh-Hans": "只显示对方当地时间适合发消息的任务。"},
    "queue.need_name": {"en": "Enter your name in the sidebar to claim tasks.",
                        "zh-Hans": "请先在侧边栏填写你的名字，才能认领任务。"},
    "queue.empty": {"en": "No follow-up tasks yet. A task appears when a viewer stays 3 minutes in a room "
                          "without ordering (and has not refused DMs).",
                    "zh-Hans": "还没有跟进任务。观众在直播间停留 3 分钟且未下单（且未拒绝私信）时会生成任务。"},
    "queue.empty_filtered": {"en": "No task matches these filters.", "zh-Hans": "没有符合筛选条件的任务。"},
    "queue.page": {"en": "Per page", "zh-Hans": "每页"},
    "queue.more": {"en": "Showing the first {n} tasks by priority.", "zh-Hans": "按优先级显示前 {n} 个任务。"},
    "queue.no_name": {"en": "(no name)", "zh-Hans": "（无昵称）"},
    "queue.reactivated": {"en": "Back after a long break", "zh-Hans": "久别回归"},
    "queue.decent": {"en": "Good time to message", "zh-Hans": "适合发消息"},
    "queue.not_decent": {"en": "Night there: wait", "zh-Hans": "对方是深夜，稍后再发"},
    "queue.local": {"en": "their time {time}", "zh-Hans": "对方当地时间 {time}"},
    "queue.local_unknown": {"en": "local time unknown", "zh-Hans": "当地时间未知"},
    "queue.dwell": {"en": "stayed {d}", "zh-Hans": "停留 {d}"},
    "queue.priority": {"en": "priority {p}", "zh-Hans": "优先级 {p}"},
    "queue.room": {"en": "room", "zh-Hans": "场次"},
    "queue.comments": {"en": "{n} comments", "zh-Hans": "{n} 条评论"},
    "queue.likes": {"en": "{n} likes", "zh-Hans": "{n} 个赞"},
    "queue.viewed": {"en": "viewed:", "zh-Hans": "浏览："},
    "queue.carted": {"en": "carted:", "zh-Hans": "加购："},
    "queue.held_by": {"en": "Claimed by", "zh-Hans": "认领人："},
    "queue.yours": {"en": "Yours: send it", "zh-Hans": "你已认领：请发送"},
    "queue.skip_reason": {"en": "Skipped because:", "zh-Hans": "跳过原因："},
    "queue.claim": {"en": "Claim", "zh-Hans": "认领"},
    "queue.sent": {"en": "Mark sent", "zh-Hans": "标记已发送"},
    "queue.release": {"en": "Release", "zh-Hans": "放回队列"},
    "queue.skip": {"en": "Skip", "zh-Hans": "跳过"},
    "queue.reason": {"en": "Reason to skip", "zh-Hans": "跳过原因"},
    "queue.reason_hint": {"en": "reason to skip, e.g. spam account", "zh-Hans": "跳过原因，例如：疑似小号"},
    "queue.done_claim": {"en": "Claimed: it is yours for 5 minutes.", "zh-Hans": "已认领：5 分钟内归你处理。"},
    "queue.done_sent": {"en": "Marked as sent.", "zh-Hans": "已标记为已发送。"},
    "queue.done_release": {"en": "Released back to the queue.", "zh-Hans": "已放回队列。"},
    "queue.done_skip": {"en": "Skipped.", "zh-Hans": "已跳过。"},
    "queue.err_reason": {"en": "Say why you skip it (type a reason first).", "zh-Hans": "请先填写跳过原因。"},
    "queue.err_claimed": {"en": "Another operator claimed this task first:", "zh-Hans": "这个任务已被其他运营认领："},
    "queue.err_state": {"en": "Not possible any more: the task is now {state}.",
                        "zh-Hans": "操作无效：任务当前状态为「{state}」。"},
    "queue.err_not_yours": {"en": "not claimed by you", "zh-Hans": "不是你认领的"},
    "queue.err_other": {"en": "The action could not be done:", "zh-Hans": "操作失败："},
    # sending on a channel (fanops.channels, screens/queue.py)
    "send.email": {"en": "Send by email", "zh-Hans": "发送邮件"},
    "send.whatsapp": {"en": "Send on WhatsApp", "zh-Hans": "通过 WhatsApp 发送"},
    "send.sms": {"en": "Send by SMS", "zh-Hans": "发送短信"},
    "send.channel.dm": {"en": "DM, by hand on the platform", "zh-Hans": "平台私信（手动发送）"},
    "send.channel.email": {"en": "email", "zh-Hans": "邮件"},
    "send.channel.whatsapp": {"en": "WhatsApp", "zh-Hans": "WhatsApp"},
    "send.channel.sms": {"en": "SMS", "zh-Hans": "短信"},
    "send.unavailable": {"en": "Not available:", "zh-Hans": "不可用："},
    "send.done": {"en": "Sent by {channel}. The provider's message id:",
                  "zh-Hans": "已通过{channel}发送。服务商消息 ID："},
    "send.failed": {"en": "Not sent by {channel}; the task is still yours. The provider said:",
                    "zh-Hans": "未能通过{channel}发送，任务仍由你认领。服务商回复："},
    "send.refused": {"en": "Cannot send by {channel}:", "zh-Hans": "无法通过{channel}发送："},
    "send.sent_line": {"en": "Sent by {who} · {channel}", "zh-Hans": "发送人 {who} · {channel}"},
    "send.message_id": {"en": "message id", "zh-Hans": "消息 ID"},
    # settings
    "settings.title": {"en": "Settings", "zh-Hans": "设置"},
    "settings.version": {"en": "Rules version {v}", "zh-Hans": "规则版本 {v}"},
    "settings.changed_at": {"en": "saved {at}", "zh-Hans": "保存于 {at}"},
    "settings.changed_by": {"en": "by", "zh-Hans": "保存人"},
    "settings.changed_meanwhile": {"en": "Someone saved new settings since you opened this page. Reload to "
                                         "see them (your unsaved edits are dropped).",
                                   "zh-Hans": "你打开本页后有人保存了新设置。"
                                              "点「重新载入」查看（未保存的修改会丢失）。"},
    "settings.reload": {"en": "Reload", "zh-Hans": "重新载入"},
    "settings.group_tiers": {"en": "Tiers", "zh-Hans": "粉丝层级"},
    "settings.group_followups": {"en": "Follow-ups", "zh-Hans": "私信跟进"},
    "settings.group_kinds": {"en": "Follow-up kinds", "zh-Hans": "跟进类型"},
    "settings.group_priority": {"en": "Follow-up priority", "zh-Hans": "跟进优先级"},
    "settings.rule_range": {"en": "Default {default} {unit}; allowed {lo} to {hi}.",
                            "zh-Hans": "默认 {default} {unit}；允许范围 {lo} 到 {hi}。"},
    "settings.templates": {"en": "Message templates", "zh-Hans": "私信模板"},
    "settings.templates_help": {"en": "Per tier and language. Use {name} and {product}; viewers with no "
                                      "template in their language get the English one.",
                                "zh-Hans": "按层级和语言设置。可用 {name} 和 {product}；"
                                           "没有对应语言模板的观众会收到英文模板。"},
    "settings.tpl_tier": {"en": "For", "zh-Hans": "适用对象"},
    "settings.tpl_lang": {"en": "Language", "zh-Hans": "语言"},
    "settings.with_product": {"en": "When they looked at a product", "zh-Hans": "看过商品时"},
    "settings.no_product": {"en": "When they did not", "zh-Hans": "没看过商品时"},
    "settings.preview": {"en": "Preview (name Anna, product Silk Scarf / none):",
                         "zh-Hans": "预览（昵称 Anna，商品 Silk Scarf / 无）："},
    "settings.templates_unsaved": {"en": "Template edits are not saved yet.", "zh-Hans": "模板修改尚未保存。"},
    "settings.whatif": {"en": "What if?", "zh-Hans": "预估影响"},
    "settings.whatif_running": {"en": "Counting tiers under the new thresholds…",
                                "zh-Hans": "正在按新阈值统计层级…"},
    "settings.whatif_title": {"en": "Tier counts today and under the new thresholds",
                              "zh-Hans": "当前层级人数与新阈值下的人数"},
    "settings.save": {"en": "Save", "zh-Hans": "保存"},
    "settings.reset": {"en": "Reset to defaults", "zh-Hans": "恢复默认"},
    "settings.reset_help": {"en": "Back to the spec's thresholds and the default templates.",
                            "zh-Hans": "恢复规范中的默认阈值和默认模板。"},
    "settings.recounting": {"en": "The scorer is recounting every fan's tier under version {v}…",
                            "zh-Hans": "评分进程正在按版本 {v} 重新计算所有粉丝的层级…"},
    "settings.no_scorer": {"en": "No scorer is running: the tiers are recounted under version {v} once one "
                                 "starts ({cmd}).",
                           "zh-Hans": "没有运行中的评分进程：启动后（{cmd}）会按版本 {v} 重新计算层级。"},
    "settings.saved": {"en": "Saved (version {v}); the scorer recounts every fan's tier under it now.",
                       "zh-Hans": "已保存（版本 {v}），评分进程正在按新版本重新计算所有粉丝的层级。"},
    "settings.was_reset": {"en": "Back to the defaults (version {v}).", "zh-Hans": "已恢复默认（版本 {v}）。"},
    "settings.bad": {"en": "Nothing was saved: {n} problem(s).", "zh-Hans": "未保存：有 {n} 个问题。"},
    # units of the rules table
    "u.days": {"en": "days", "zh-Hans": "天"},
    "u.hour": {"en": "hour", "zh-Hans": "点"},
    "u.likes": {"en": "likes", "zh-Hans": "个赞"},
    "u.minutes": {"en": "minutes", "zh-Hans": "分钟"},
    "u.minutes (wall time)": {"en": "minutes", "zh-Hans": "分钟"},
    "u.orders": {"en": "orders", "zh-Hans": "单"},
    "u.points": {"en": "points", "zh-Hans": "分"},
    "u.rooms": {"en": "rooms", "zh-Hans": "场"},
    # the post-show review (screens/review.py; the metric names also head the HTML report's tables)
    "review.reading": {"en": "Reading the archive…", "zh-Hans": "正在读取归档…"},
    "review.empty": {"en": "No archived show yet. A show is archived 30 minutes (shop clock) after its last event, "
                           "or with `python -m scoring close-room --shop SHOP --room ROOM`.",
                     "zh-Hans": "还没有已归档的直播。直播在最后一个事件 30 分钟后（按店铺时钟）自动归档，"
                                "也可以用 `python -m scoring close-room --shop SHOP --room ROOM` 立即归档。"},
    "review.show": {"en": "Show", "zh-Hans": "场次"},
    "review.compare": {"en": "Compare with", "zh-Hans": "对比场次"},
    "review.refresh": {"en": "Update follow-ups from the queue", "zh-Hans": "从跟进队列更新结果"},
    "review.refresh_help": {"en": "operators keep sending DMs after the show: read their outcomes from Redis",
                            "zh-Hans": "下播后运营仍在发私信：从 Redis 读取它们的最新结果"},
    "review.refreshed": {"en": "Follow-up outcomes updated for {n} show(s).",
                         "zh-Hans": "已更新 {n} 场直播的跟进结果。"},
    "review.unreadable": {"en": "The archived shows cannot be read:", "zh-Hans": "无法读取已归档的直播："},
    "review.partial": {"en": "Some of this show's events had left Redis before it was archived: event counts are "
                             "partial.",
                       "zh-Hans": "本场有部分事件在归档前已离开 Redis：事件计数不完整。"},
    "review.gmv": {"en": "GMV:", "zh-Hans": "成交额："},
    "review.viewers": {"en": "Viewers", "zh-Hans": "观众"},
    "review.downloads": {"en": "Downloads", "zh-Hans": "下载"},
    "review.filters": {"en": "Filters", "zh-Hans": "筛选"},
    "review.tier_entry": {"en": "Tier at entry", "zh-Hans": "进场时层级"},
    "review.tier_close": {"en": "Tier at close", "zh-Hans": "下播时层级"},
    "review.country": {"en": "Country", "zh-Hans": "国家/地区"},
    "review.lang": {"en": "Language", "zh-Hans": "语言"},
    "review.buyers_only": {"en": "Buyers only", "zh-Hans": "只看下单观众"},
    "review.min_dwell": {"en": "Dwell at least (min)", "zh-Hans": "停留至少（分钟）"},
    "review.search": {"en": "Name or id contains", "zh-Hans": "名字或 ID 包含"},
    "review.shown": {"en": "{n} of {total} viewers", "zh-Hans": "共 {total} 位观众，显示 {n} 位"},
    "review.table": {"en": "Table", "zh-Hans": "数据表"},
    "review.csv": {"en": "CSV", "zh-Hans": "CSV"},
    "review.parquet": {"en": "Parquet", "zh-Hans": "Parquet"},
    "review.html": {"en": "HTML report", "zh-Hans": "HTML 报告"},
    "review.t.viewers": {"en": "Viewers (filtered)", "zh-Hans": "观众（已筛选）"},
    "review.t.headlines": {"en": "Headline per show", "zh-Hans": "各场核心指标"},
    "review.t.funnel": {"en": "Funnel", "zh-Hans": "转化漏斗"},
    "review.t.conversion_tier": {"en": "Conversion by tier at entry", "zh-Hans": "按进场层级的转化率"},
    "review.t.conversion_country": {"en": "Conversion by country", "zh-Hans": "按国家/地区的转化率"},
    "review.t.conversion_lang": {"en": "Conversion by language", "zh-Hans": "按语言的转化率"},
    "review.t.sankey": {"en": "Tiers entry → close", "zh-Hans": "层级：进场 → 下播"},
    "review.t.followups": {"en": "Follow-up outcomes", "zh-Hans": "跟进结果"},
    "review.t.attributed": {"en": "Orders after a DM", "zh-Hans": "私信后的订单"},
    "review.t.gmv": {"en": "GMV per currency", "zh-Hans": "各币种成交额"},
    "review.t.top_products": {"en": "Top products", "zh-Hans": "热门商品"},
    "review.t.top_fans": {"en": "Top fans", "zh-Hans": "核心粉丝"},
    "review.t.presence": {"en": "Present per minute", "zh-Hans": "每分钟在线人数"},
    "review.t.events": {"en": "Raw events", "zh-Hans": "原始事件"},
    "review.t.followup_tasks": {"en": "Follow-up tasks", "zh-Hans": "跟进任务"},
    "review.t.transitions": {"en": "Tier transitions", "zh-Hans": "层级变化"},
    "review.m.unique_viewers": {"en": "Unique viewers", "zh-Hans": "累计观众"},
    "review.m.peak_present": {"en": "Peak present", "zh-Hans": "在线峰值"},
    "review.m.avg_present": {"en": "Average present", "zh-Hans": "平均在线"},
    "review.m.new_viewers": {"en": "New viewers", "zh-Hans": "新观众"},
    "review.m.reactivated": {"en": "Reactivated", "zh-Hans": "回归观众"},
    "review.m.dwell_median_s": {"en": "Median dwell (s)", "zh-Hans": "停留中位数（秒）"},
    "review.m.dwell_p90_s": {"en": "Dwell p90 (s)", "zh-Hans": "停留 P90（秒）"},
    "review.m.comments": {"en": "Comments", "zh-Hans": "评论"},
    "review.m.likes": {"en": "Likes", "zh-Hans": "点赞"},
    "review.m.shares": {"en": "Shares", "zh-Hans": "分享"},
    "review.m.follows": {"en": "Follows", "zh-Hans": "关注"},
    "review.m.orders": {"en": "Orders", "zh-Hans": "订单"},
    "review.m.buyers": {"en": "Buyers", "zh-Hans": "下单人数"},
    "review.m.conversion": {"en": "Conversion", "zh-Hans": "转化率"},
    "review.m.made": {"en": "Follow-ups made", "zh-Hans": "生成跟进"},
    "review.m.sent": {"en": "Follow-ups sent", "zh-Hans": "已发私信"},
    "review.m.skipped": {"en": "Skipped", "zh-Hans": "已跳过"},
    "review.m.converted_before_contact": {"en": "Converted before contact", "zh-Hans": "联系前已成交"},
    "review.m.attributed_orders": {"en": "Orders after a DM (7 d)", "zh-Hans": "私信后 7 天内订单"},
    # the review's charts (review.report; the HTML report draws them in English)
    "review.c.presence": {"en": "Viewers present, per minute", "zh-Hans": "每分钟在线观众"},
    "review.c.since_start": {"en": "minutes since start", "zh-Hans": "开播后分钟数"},
    "review.c.time_utc": {"en": "time (UTC)", "zh-Hans": "时间（UTC）"},
    "review.c.present": {"en": "viewers present", "zh-Hans": "在线观众"},
    "review.c.dwell": {"en": "Dwell distribution", "zh-Hans": "停留时长分布"},
    "review.c.dwell_axis": {"en": "dwell, minutes (median {median}, p90 {p90})",
                           "zh-Hans": "停留时长，分钟（中位数 {median}，P90 {p90}）"},
    "review.c.viewers": {"en": "viewers", "zh-Hans": "观众"},
    "review.c.funnel": {"en": "Funnel: join → product view → cart → order",
                        "zh-Hans": "漏斗：进场 → 浏览商品 → 加购 → 下单"},
    "review.c.step.join": {"en": "joined", "zh-Hans": "进场"},
    "review.c.step.product_view": {"en": "viewed a product", "zh-Hans": "浏览商品"},
    "review.c.step.cart_add": {"en": "added to cart", "zh-Hans": "加购"},
    "review.c.step.order": {"en": "ordered", "zh-Hans": "下单"},
    "review.c.sankey": {"en": "Tiers: at entry → at close", "zh-Hans": "层级：进场时 → 下播时"},
    "review.c.at_entry": {"en": "{tier} (entry)", "zh-Hans": "{tier}（进场）"},
    "review.c.at_close": {"en": "{tier} (close)", "zh-Hans": "{tier}（下播）"},
    "review.c.conversion_axis": {"en": "buyers / viewers", "zh-Hans": "下单人数 / 观众"},
    # a plotly hover template (its own %{...} fields, no parameters of ours)
    "review.c.conversion_hover": {"en": "%{x}: %{y:.1%} (%{customdata[1]} of %{customdata[0]} viewers)",
                                  "zh-Hans": "%{x}：%{y:.1%}（%{customdata[0]} 位观众中 %{customdata[1]} 位下单）"},
    "review.c.followups": {"en": "Follow-ups: made, outcome, orders after the DM",
                           "zh-Hans": "跟进：生成、结果、私信后的订单"},
    "review.c.made": {"en": "made", "zh-Hans": "生成"},
    "review.c.ordered_after_dm": {"en": "ordered ≤ 7 d after DM", "zh-Hans": "私信后 7 天内下单"},
    "review.c.tasks_axis": {"en": "tasks (orders for the last bar)", "zh-Hans": "任务数（最后一栏为订单数）"},
    "review.c.product_views": {"en": "product views", "zh-Hans": "商品浏览"},
    "review.c.cart_adds": {"en": "cart adds", "zh-Hans": "加购"},
    "review.c.carters_ordered": {"en": "carters who ordered", "zh-Hans": "加购后下单"},
    "review.c.trends": {"en": "Across shows", "zh-Hans": "历场趋势"},
    # kept webhook orders (screens/orders.py)
    "nav.orders": {"en": "Kept orders", "zh-Hans": "待匹配订单"},
    "orders.title": {"en": "Kept shop orders", "zh-Hans": "待匹配的店铺订单"},
    "orders.caption": {"en": "Orders from the shop's webhooks that named no viewer or room. Each is kept until "
                                "applied: link it here, or it is applied once exactly one viewer has given its email "
                                "or phone.",
                       "zh-Hans": "来自店铺 Webhook、未能对应观众或直播间的订单。订单会一直保留：可在此关联，"
                                  "或当恰好一位观众提供了相同的邮箱或电话时自动计入。"},
    "orders.none": {"en": "No kept orders: every order matched a viewer and a room.",
                    "zh-Hans": "没有待匹配订单：所有订单都已对应观众和直播间。"},
    "orders.why": {"en": "Kept because:", "zh-Hans": "保留原因："},
    "orders.viewer": {"en": "Viewer id", "zh-Hans": "观众 ID"},
    "orders.room": {"en": "Room", "zh-Hans": "直播间"},
    "orders.link": {"en": "Link", "zh-Hans": "关联"},
    "orders.pending": {"en": "Linked: the orders server applies it within a second.",
                       "zh-Hans": "已关联：订单服务将在一秒内计入。"},
    "orders.linked": {"en": "Linked. The order is applied on the orders server's next round.",
                      "zh-Hans": "已关联，订单服务下一轮即计入。"},
    "orders.err_viewer": {"en": "Give a viewer id (1-128 characters).", "zh-Hans": "请填写观众 ID（1-128 个字符）。"},
    "orders.err_room": {"en": "Give a room (1-128 characters).", "zh-Hans": "请填写直播间（1-128 个字符）。"},
    "orders.err_gone": {"en": "That order is no longer kept: it was applied meanwhile.",
                        "zh-Hans": "该订单已不在待匹配列表：已被计入。"},
}

_RULE_WORDS: dict[str, tuple[str, str, str]] = {
    # name: (English label, Chinese label, Chinese help)
    "dormant_days": ("Dormant after", "沉睡判定", "超过这么久没有任何互动的观众记为沉睡粉"),
    "active_orders": ("Active from orders", "活跃粉订单数", "累计这么多笔不同订单即为活跃粉"),
    "active_rooms": ("Active from rooms", "活跃粉场次数", "……或在时间窗内看过这么多场直播"),
    "active_window_days": ("Rooms window", "场次时间窗", "统计观看场次的时间窗"),
    "reactivated_days": ("Reactivated after", "回归判定", "离开这么久后再回来，算作本场回归观众"),
    "present_minutes": ("Present for", "在线判定", "观众最后一次互动后这么久内算作在线"),
    "followup_dwell_minutes": ("Follow-up after dwell", "跟进停留时长", "停留这么久（且未下单）就生成跟进任务"),
    "followup_cooldown_days": ("Follow-up cooldown", "跟进冷却期", "这段时间内已发过私信的观众不再生成新任务"),
    "claim_lease_minutes": ("Claim lasts", "认领有效期", "运营认领任务后，超过这么久未处理就自动放回队列"),
    "followup_expire_hours": ("Task expires after", "任务过期时间", "任务生成后这么久仍未处理就过期"),
    "decent_hour_start": ("DMs from", "最早发送时间", "对方当地时间最早几点可以发私信"),
    "decent_hour_end": ("DMs until", "最晚发送时间", "对方当地时间从几点起不再发私信，等到第二天"),
    "w_comment": ("Per comment", "每条评论", "每条评论增加的优先级"),
    "w_cart_add": ("Per cart add", "每次加购", "每次加购增加的优先级"),
    "w_product_view": ("Per product view", "每次浏览商品", "每次浏览商品增加的优先级"),
    "w_share": ("Per share", "每次分享", "每次分享增加的优先级"),
    "w_follow": ("Per follow", "每次关注", "每次关注增加的优先级"),
    "likes_cap": ("Likes counted at most", "点赞计入上限", "最多计入这么多个赞"),
    "likes_per_point": ("Likes per point", "每分所需点赞", "多少个赞折合 1 分优先级"),
    "bonus_reactivated": ("Bonus: reactivated", "加分：回归观众", "回归观众的额外优先级"),
    "bonus_first_buyer": ("Bonus: first buyer", "加分：首单客", "首单客的额外优先级"),
    "bonus_active": ("Bonus: active", "加分：活跃粉", "活跃粉的额外优先级"),
    "bonus_new_fan": ("Bonus: new fan", "加分：新粉", "新粉的额外优先级"),
}
for _rule in RULES:
    _en, _zh, _zh_help = _RULE_WORDS.get(_rule.name, (_rule.name.replace("_", " "), _rule.name, _rule.help))
    TABLE[f"rule.{_rule.name}"] = {"en": _en, "zh-Hans": _zh}
    TABLE[f"rule_help.{_rule.name}"] = {"en": _rule.help[0].upper() + _rule.help[1:] + ".",
                                        "zh-Hans": _zh_help + "。"}


TABLE.update(FANS)


# Template languages, each named in its own language (an operator may not read the UI's).
_LANGUAGE_NAMES = {"en": "English", "es": "Español", "pt": "Português", "ar": "العربية", "de": "Deutsch",
                   "id": "Bahasa Indonesia", "ja": "日本語", "zh": "中文", "fr": "Français"}


def language_name(code: str) -> str:
    """``es`` -> ``es · Español``; an unknown code as it is."""
    name = _LANGUAGE_NAMES.get(code)
    return f"{code} · {name}" if name else code


def t(key: str, lang: str = "en", **params: Any) -> str:
    """The string ``key`` in ``lang`` (English if missing), with ``params`` filled in.

    An unknown key gives the key itself, so a missing string shows up on screen
    instead of breaking the page.
    """
    row = TABLE.get(key)
    if row is None:
        return key
    text = row.get(lang) or row["en"]
    return text.format(**params) if params else text
