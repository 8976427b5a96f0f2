package main

import (
	"errors"
	"fmt"

	"github.com/troupehq/troupe/decider"
)

// Command is implemented by every account command; AccountID names the
// account's stream.
type Command interface{ AccountID() string }

// OpenAccount opens an account for its owner.
type OpenAccount struct {
	Account string
	Owner   string
}

// Deposit puts money into an open account.
type Deposit struct {
	Account string
	Amount  int64
}

// Withdraw takes money out of an open account, never below zero.
type Withdraw struct {
	Account string
	Amount  int64
}

// CloseAccount pays out what is left and closes the account.
type CloseAccount struct {
	Account string
}

func (c OpenAccount) AccountID() string  { return c.Account }
func (c Deposit) AccountID() string      { return c.Account }
func (c Withdraw) AccountID() string     { return c.Account }
func (c CloseAccount) AccountID() string { return c.Account }

// Event is implemented by every account event.
type Event interface{ isAccountEvent() }

// AccountOpened records a new account.
type AccountOpened struct {
	Owner string `json:"owner"`
}

// Deposited records money put in.
type Deposited struct {
	Amount int64 `json:"amount"`
}

// Withdrawn records money taken out.
type Withdrawn struct {
	Amount int64 `json:"amount"`
}

// AccountClosed records the closing; nothing is accepted after it.
type AccountClosed struct{}

func (AccountOpened) isAccountEvent() {}
func (Deposited) isAccountEvent()     {}
func (Withdrawn) isAccountEvent()     {}
func (AccountClosed) isAccountEvent() {}

// Account is the state of one account.
type Account struct {
	Status    string `json:"status"` // "" (not opened), "open" or "closed"
	Owner     string `json:"owner"`
	Balance   int64  `json:"balance"`
	Movements int    `json:"movements"` // deposits and withdrawals
}

// The domain's errors; Decide returns them marked with decider.Rejected,
// and Send returns them so: errors.Is(err, ErrNotOpen) holds, and so does
// errors.Is(err, decider.ErrRejected).
var (
	ErrNotOpen           = errors.New("account is not open")
	ErrAlreadyOpen       = errors.New("account is already open")
	ErrInsufficientFunds = errors.New("insufficient funds")
)

// Accounts is the account aggregate: pure functions of commands, events
// and state, no I/O.
var Accounts = decider.Decider[Command, Event, Account]{
	Decide: func(c Command, s Account) ([]Event, error) {
		if _, open := c.(OpenAccount); !open && s.Status != "open" {
			return nil, decider.Rejected(ErrNotOpen)
		}
		switch c := c.(type) {
		case OpenAccount:
			if s.Status != "" {
				return nil, decider.Rejected(ErrAlreadyOpen)
			}
			return []Event{AccountOpened{Owner: c.Owner}}, nil
		case Deposit:
			if c.Amount <= 0 {
				return nil, decider.Rejectf("amount must be positive, got %d", c.Amount)
			}
			return []Event{Deposited{Amount: c.Amount}}, nil
		case Withdraw:
			if c.Amount <= 0 {
				return nil, decider.Rejectf("amount must be positive, got %d", c.Amount)
			}
			if c.Amount > s.Balance {
				return nil, decider.Rejected(fmt.Errorf("%w: balance %d, asked %d", ErrInsufficientFunds, s.Balance, c.Amount))
			}
			return []Event{Withdrawn{Amount: c.Amount}}, nil
		case CloseAccount:
			if s.Balance > 0 { // two events, appended together
				return []Event{Withdrawn{Amount: s.Balance}, AccountClosed{}}, nil
			}
			return []Event{AccountClosed{}}, nil
		}
		return nil, fmt.Errorf("unknown command %T", c)
	},
	Evolve: func(s Account, e Event) Account {
		switch e := e.(type) {
		case AccountOpened:
			s.Status, s.Owner = "open", e.Owner
		case Deposited:
			s.Balance += e.Amount
			s.Movements++
		case Withdrawn:
			s.Balance -= e.Amount
			s.Movements++
		case AccountClosed:
			s.Status = "closed"
		}
		return s
	},
	InitialState: func() Account { return Account{} },
}
